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

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
REL="${CARGO_TARGET_DIR:-$ROOT/target}/release"
WORK=$(mktemp -d -t acs-proxy-ab.XXXXXX)
PIDS=()

BENCH_TAG=proxy-ab
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh" # log, die, free_port, wait_port, cpu_ticks, cpu_pct, rss_mb
cleanup() {
  for pid in "${PIDS[@]:-}"; do [[ -n "$pid" ]] && kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]:-}"; do [[ -n "$pid" ]] && wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

wait_http() {
  for _ in $(seq 1 100); do
    [[ $(curl -s -o /dev/null -w '%{http_code}' "$1" 2>/dev/null) == 200 ]] && return 0
    sleep 0.1
  done
  die "$2 does not answer 200 on $1"
}
bin() { command -v "$1" 2>/dev/null || echo "/usr/sbin/$1"; }
to_ms() {
  awk -v v="$1" 'BEGIN {
    if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
    else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
    else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
    else printf "%s", v }'
}
parse_wrk() { # file -> "rps p50_ms p99_ms"
  local rps p50 p99
  rps=$(awk '/^Requests\/sec:/ {print $2}' "$1")
  p50=$(awk '$1 == "50%" {print $2}' "$1")
  p99=$(awk '$1 == "99%" {print $2}' "$1")
  echo "${rps:-0} $(to_ms "${p50:-0}") $(to_ms "${p99:-0}")"
}
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR] = $1} END {
  if (NR == 0) print 0; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

for c in wrk curl; do command -v "$c" >/dev/null || die "$c is needed"; done
[[ -x "$(bin nats-server)" ]] || die "nats-server is needed"
if [[ -z "${ACS_PROXY:-}" ]]; then
  log "building release binaries"
  cargo build --release -q -p acs-proxy --bin acs-proxy --example route_latency -p demo-web --bin demo-web
  ACS_PROXY="$REL/acs-proxy"
fi

NATS_PORT=$(free_port)
"$(bin nats-server)" -a 127.0.0.1 -p "$NATS_PORT" >"$WORK/nats.log" 2>&1 &
PIDS+=($!)
wait_port "$NATS_PORT" nats-server
NATS_URL="nats://127.0.0.1:$NATS_PORT"
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

run_wrk() { # name url duration -> file
  local out="$WORK/wrk-$1.txt"
  wrk -t"$WRK_THREADS" -c"$CONNS" -d"$3" --latency "$2" >"$out" 2>&1 || { cat "$out" >&2; die "wrk failed for $1"; }
  echo "$out"
}
log "warm-up ($WARMUP each)"
for n in "${NAMES[@]}"; do run_wrk "warm-$n" "${URL[$n]}" "$WARMUP" >/dev/null; done

declare -A RPS P50 P99
N=${#NAMES[@]}
for r in $(seq 1 "$ROUNDS"); do
  for i in $(seq 0 $((N - 1))); do
    n=${NAMES[$(( (i + r - 1) % N ))]}
    read -r rps p50 p99 < <(parse_wrk "$(run_wrk "$n-$r" "${URL[$n]}" "$DURATION")")
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
