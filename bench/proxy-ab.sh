#!/usr/bin/env bash
# proxy-ab.sh — acs-proxy's Pingora knobs, A/B in one run (target P1 of
# docs/PERFORMANCE.md).
#
# One demo-web backend (`--work-ms 0`, GET /whoami) and one acs-proxy per variant, all running
# at once on loopback; `wrk -t2 -c32 --latency` rounds interleaved over the variants (variant
# order rotates every round), then the median req/s, p50 and p99 per variant and its ratio to
# the first variant. Every variant gets --threads $PROXY_THREADS unless its flags say otherwise.
#
# Usage: bench/proxy-ab.sh
#   VARIANTS='default:|no-steal:--work-stealing false|pool-1k:--upstream-keepalive-pool 1024|accept-2:--listener-tasks 2'
#   ROUNDS=5 DURATION=8s WARMUP=2s CONNS=32 WRK_THREADS=2 PROXY_THREADS=2 bench/proxy-ab.sh
#   ACS_PROXY=path   another acs-proxy binary (default: a release build of this tree)
# Needs: cargo, nats-server, wrk, curl.
set -euo pipefail

VARIANTS=${VARIANTS:-'default:|no-steal:--work-stealing false|pool-1k:--upstream-keepalive-pool 1024|accept-2:--listener-tasks 2'}
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-8s}
WARMUP=${WARMUP:-2s}
CONNS=${CONNS:-32}
WRK_THREADS=${WRK_THREADS:-2}
PROXY_THREADS=${PROXY_THREADS:-2}

BENCH_TAG=proxy-ab
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_workdir proxy-ab

for c in wrk curl; do command -v "$c" >/dev/null || die "$c is needed"; done
[[ -x "$(bin nats-server)" ]] || die "nats-server is needed"
if [[ -z "${ACS_PROXY:-}" ]]; then
  log "building release binaries"
  cargo build --release -q -p acs-proxy --bin acs-proxy --example route_latency -p demo-web --bin demo-web
  ACS_PROXY="$REL/acs-proxy"
fi

start_nats
BE_PORT=$(free_port)
DEMO_BIND=127.0.0.1 RUST_LOG=warn "$REL/demo-web" --port "$BE_PORT" --id be1 --work-ms 0 >"$WORK/backend.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$BE_PORT/whoami" demo-web

IFS='|' read -r -a SPECS <<<"$VARIANTS"
NAMES=()
declare -A URL FLAGS
for spec in "${SPECS[@]}"; do
  name=${spec%%:*}; flags=${spec#*:}
  port=$(free_port)
  threads=(--threads "$PROXY_THREADS")
  [[ " $flags " == *" --threads "* ]] && threads=()
  # shellcheck disable=SC2086 # the flags are words
  RUST_LOG=warn "$ACS_PROXY" --listen "127.0.0.1:$port" --nats "$NATS_URL" --nats-insecure --prefix acs \
    --id "ab-$name" "${threads[@]}" $flags >"$WORK/proxy-$name.log" 2>&1 &
  PIDS+=($!)
  wait_port "$port" "acs-proxy $name"
  NAMES+=("$name"); URL[$name]="http://127.0.0.1:$port/whoami"; FLAGS[$name]=$flags
done
FIRST_ADDR=${URL[${NAMES[0]}]#http://}; FIRST_ADDR=${FIRST_ADDR%/whoami}
# One reset reaches every proxy (they all subscribe to the same prefix).
"$REL/examples/route_latency" --nats "$NATS_URL" --proxy "$FIRST_ADDR" --service bench \
  --backend "be1=127.0.0.1:$BE_PORT" --setup-only
for n in "${NAMES[@]}"; do u=${URL[$n]}; wait_http "$u" "acs-proxy $n"; done

log "warm-up ($WARMUP each)"
for n in "${NAMES[@]}"; do run_wrk "warm-$n" "${URL[$n]}" "$WARMUP" >/dev/null; done

declare -A RPS P50 P99
N=${#NAMES[@]}
for r in $(seq 1 "$ROUNDS"); do
  for i in $(seq 0 $((N - 1))); do
    n=${NAMES[$(( (i + r - 1) % N ))]}
    read -r rps p50 p99 _ < <(parse_wrk "$(run_wrk "$n-$r" "${URL[$n]}" "$DURATION")")
    RPS[$n]+="$rps "; P50[$n]+="$p50 "; P99[$n]+="$p99 "
    log "round $r/$ROUNDS $n: $rps req/s, p50 $p50 ms, p99 $p99 ms"
  done
done

echo
echo "acs-proxy knobs A/B — $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "wrk -t$WRK_THREADS -c$CONNS -d$DURATION --latency, $ROUNDS interleaved rounds (medians), --threads $PROXY_THREADS"
printf '%-14s %10s %8s %8s %8s  %-36s %s\n' variant "req/s" "p50 ms" "p99 ms" "vs 1st" flags "rounds (req/s)"
BASE=$(median <<<"${RPS[${NAMES[0]}]}")
for n in "${NAMES[@]}"; do
  m=$(median <<<"${RPS[$n]}")
  printf '%-14s %10.0f %8.3f %8.3f %8s  %-36s %s\n' "$n" "$m" "$(median <<<"${P50[$n]}")" "$(median <<<"${P99[$n]}")" \
    "$(awk -v a="$m" -v b="$BASE" 'BEGIN { printf "%.3f", a / b }')" "${FLAGS[$n]:--}" "${RPS[$n]}"
done
