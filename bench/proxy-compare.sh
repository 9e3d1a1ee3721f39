#!/usr/bin/env bash
# proxy-compare.sh — acs-proxy side by side with nginx and HAProxy (issue 10, P1 and P2).
#
# In one run, on this machine (everything on loopback), against one demo-web backend
# (`demo-web --port N --id be1 --work-ms 0`, GET /whoami):
#   P1. closed-loop throughput: `wrk -t2 -c32 -d10s --latency`, rounds interleaved
#       (direct, acs-proxy, pingora-bare, nginx, HAProxy) x ROUNDS; prints req/s (median of
#       the rounds), p50/p99 (medians too) and each one's ratio vs nginx and vs HAProxy;
#   P2. latency the proxy adds under open-loop load: `acsctl load` at half of acs-proxy's
#       measured peak, straight to the backend, through acs-proxy and through pingora-bare;
#       prints p50/p99 of each and proxy minus direct.
#
# pingora-bare is crates/proxy/examples/bare_pingora.rs: the same Pingora and server settings as
# acs-proxy with an empty ProxyHttp (one fixed peer, no filters, no logging, no metrics). It shows
# how much of the gap to nginx/HAProxy is Pingora's own (cloudflare/pingora#372).
#
# Every proxy gets 2 workers (acs-proxy and pingora-bare --threads 2, nginx worker_processes 2,
# HAProxy nbthread 2), keeps upstream connections alive (nginx keepalive 64, HAProxy http-reuse
# always, Pingora's pool) and logs no requests.
#
# Usage: bench/proxy-compare.sh            (a run takes ~4 min after the build)
#   ROUNDS=3 DURATION=10s CONNS=32 WRK_THREADS=2 PROXY_THREADS=2 LOAD_DURATION=20s \
#   LOAD_RPS=<fixed rate instead of half the peak> bench/proxy-compare.sh
#
# Needs: cargo, nats-server, wrk, nginx (nginx-light), haproxy, curl — the Debian packages are
# installed with apt-get when missing (nginx and HAProxy are for this benchmark only).
# Note: wrk, the proxies and the backend share this machine's cores; the numbers are a
# comparison on equal terms, not what any of them does on its own hardware.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-32}
WRK_THREADS=${WRK_THREADS:-2}
PROXY_THREADS=${PROXY_THREADS:-2}
WARMUP=${WARMUP:-2s}
LOAD_DURATION=${LOAD_DURATION:-20s}
LOAD_RPS=${LOAD_RPS:-}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
REL="$TARGET_DIR/release"
WORK=$(mktemp -d -t acs-proxy-compare.XXXXXX)
PIDS=()

BENCH_TAG=compare
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh" # log, die, free_port, wait_port, cpu_ticks, cpu_pct, rss_mb

cleanup() {
  for pid in "${PIDS[@]:-}"; do
    [[ -n "$pid" ]] && kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]:-}"; do
    [[ -n "$pid" ]] && wait "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

as_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }

have() { command -v "$1" >/dev/null 2>&1 || [[ -x /usr/sbin/$1 ]]; }
bin() { command -v "$1" 2>/dev/null || echo "/usr/sbin/$1"; }

APT_UPDATED=0
ensure_pkg() { # command package
  have "$1" && return 0
  log "$1 missing: installing Debian package $2"
  if [[ $APT_UPDATED == 0 ]]; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    APT_UPDATED=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" >/dev/null
  have "$1" || die "could not install $2"
}

wait_http() { # url what
  for _ in $(seq 1 100); do
    [[ $(curl -s -o /dev/null -w '%{http_code}' "$1" 2>/dev/null) == 200 ]] && return 0
    sleep 0.1
  done
  die "$2 does not answer 200 on $1"
}

to_ms() { # wrk value with unit (us|ms|s) -> ms
  awk -v v="$1" 'BEGIN {
    if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
    else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
    else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
    else printf "%s", v }'
}

parse_wrk() { # file -> "rps p50_ms p99_ms errors"
  local rps p50 p99 errs
  rps=$(awk '/^Requests\/sec:/ {print $2}' "$1")
  p50=$(awk '$1 == "50%" {print $2}' "$1")
  p99=$(awk '$1 == "99%" {print $2}' "$1")
  errs=$(awk '/Socket errors:/ {gsub(",", ""); s += $4 + $6 + $8 + $10}
              /Non-2xx or 3xx responses:/ {s += $NF} END {print s + 0}' "$1")
  echo "${rps:-0} $(to_ms "${p50:-0}") $(to_ms "${p99:-0}") ${errs:-0}"
}

run_wrk() { # name url duration -> output file
  local out="$WORK/wrk-$1.txt"
  wrk -t"$WRK_THREADS" -c"$CONNS" -d"$3" --latency "$2" >"$out" 2>&1 || { cat "$out" >&2; die "wrk failed for $1"; }
  echo "$out"
}

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR] = $1} END {
  if (NR == 0) print 0; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
diff_ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%+.3f", a - b }'; }

# ---- prerequisites --------------------------------------------------------------------------
ensure_pkg wrk wrk
ensure_pkg nats-server nats-server
ensure_pkg nginx nginx-light
ensure_pkg haproxy haproxy
ensure_pkg curl curl

log "building release binaries (the first build of Pingora takes several minutes)"
cargo build --release -q -p acs-proxy --bin acs-proxy --example route_latency \
  --example bare_pingora -p demo-web --bin demo-web -p acsctl --bin acsctl

# ---- processes ------------------------------------------------------------------------------
NATS_PORT=$(free_port)
"$(bin nats-server)" -a 127.0.0.1 -p "$NATS_PORT" >"$WORK/nats.log" 2>&1 &
PIDS+=($!)
wait_port "$NATS_PORT" nats-server
NATS_URL="nats://127.0.0.1:$NATS_PORT"

BE_PORT=$(free_port)
DEMO_BIND=127.0.0.1 RUST_LOG=warn "$REL/demo-web" --port "$BE_PORT" --id be1 --work-ms 0 \
  >"$WORK/backend.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$BE_PORT/whoami" demo-web

ACS_PORT=$(free_port)
RUST_LOG=warn "$REL/acs-proxy" --listen "127.0.0.1:$ACS_PORT" --nats "$NATS_URL" --nats-insecure \
  --prefix acs --id compare --metrics-interval 1s --threads "$PROXY_THREADS" \
  >"$WORK/acs-proxy.log" 2>&1 &
PIDS+=($!)
ACS_PID=$!
wait_port "$ACS_PORT" acs-proxy
log "publishing a reset for service 'bench' -> be1 (127.0.0.1:$BE_PORT)"
"$REL/examples/route_latency" --nats "$NATS_URL" --proxy "127.0.0.1:$ACS_PORT" --service bench \
  --backend "be1=127.0.0.1:$BE_PORT" --setup-only

BARE_PORT=$(free_port)
"$REL/examples/bare_pingora" --listen "127.0.0.1:$BARE_PORT" --upstream "127.0.0.1:$BE_PORT" \
  --threads "$PROXY_THREADS" >"$WORK/pingora-bare.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$BARE_PORT/whoami" pingora-bare

NGINX_PORT=$(free_port)
nginx_conf "$WORK/nginx" "$NGINX_PORT" "$BE_PORT" "$PROXY_THREADS" on 4096
"$(bin nginx)" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" >"$WORK/nginx/stdout.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$NGINX_PORT/whoami" nginx

HAPROXY_PORT=$(free_port)
haproxy_cfg "$WORK/haproxy.cfg" "$HAPROXY_PORT" "$BE_PORT" "$PROXY_THREADS" 4096
"$(bin haproxy)" -db -f "$WORK/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$HAPROXY_PORT/whoami" haproxy

declare -A URL=(
  [direct]="http://127.0.0.1:$BE_PORT/whoami"
  [acs-proxy]="http://127.0.0.1:$ACS_PORT/whoami"
  [pingora-bare]="http://127.0.0.1:$BARE_PORT/whoami"
  [nginx]="http://127.0.0.1:$NGINX_PORT/whoami"
  [haproxy]="http://127.0.0.1:$HAPROXY_PORT/whoami"
)
TARGETS=(direct acs-proxy pingora-bare nginx haproxy)

# ---- P1: closed-loop throughput -------------------------------------------------------------
log "warm-up ($WARMUP each)"
for t in "${TARGETS[@]}"; do run_wrk "warm-$t" "${URL[$t]}" "$WARMUP" >/dev/null; done

declare -A RPS P50 P99 ERR
for r in $(seq 1 "$ROUNDS"); do
  for t in "${TARGETS[@]}"; do
    log "round $r/$ROUNDS: wrk -t$WRK_THREADS -c$CONNS -d$DURATION --latency ${URL[$t]} ($t)"
    read -r rps p50 p99 errs < <(parse_wrk "$(run_wrk "$t-$r" "${URL[$t]}" "$DURATION")")
    RPS[$t]+="$rps "; P50[$t]+="$p50 "; P99[$t]+="$p99 "; ERR[$t]=$(( ${ERR[$t]:-0} + errs ))
    log "  $t: $rps req/s, p50 $p50 ms, p99 $p99 ms, errors $errs"
  done
done
declare -A M_RPS M_P50 M_P99
for t in "${TARGETS[@]}"; do
  M_RPS[$t]=$(median <<<"${RPS[$t]}")
  M_P50[$t]=$(median <<<"${P50[$t]}")
  M_P99[$t]=$(median <<<"${P99[$t]}")
done

# ---- P2: open-loop added latency ------------------------------------------------------------
# `acsctl load` prints a total line with "p50 X.XXXms p99 Y.YYYms" (µs resolution, <= 0.8 % error,
# upper bucket edge) and then a latency table in µs.
RATE=${LOAD_RPS:-$(awk -v p="${M_RPS[acs-proxy]}" 'BEGIN { printf "%d", p / 2 }')}
run_load() { # name url -> "p50_ms p99_ms sent ok failed skipped"
  local out="$WORK/load-$1.txt"
  "$REL/acsctl" load "$2" --rps "$RATE" --duration "$LOAD_DURATION" >"$out" 2>&1 \
    || { cat "$out" >&2; die "acsctl load failed for $1"; }
  local last
  last=$(grep -E 'total|sent' "$out" | tail -n1)
  local p50 p99
  p50=$(sed -n 's/.* p50 \([0-9.]*\)ms.*/\1/p' <<<"$last")
  p99=$(sed -n 's/.* p99 \([0-9.]*\)ms.*/\1/p' <<<"$last")
  echo "${p50:-0} ${p99:-0} | $last"
}
log "open loop: acsctl load --rps $RATE --duration $LOAD_DURATION: direct, acs-proxy, pingora-bare"
LD=$(run_load direct "${URL[direct]}")
LP=$(run_load acs-proxy "${URL[acs-proxy]}")
LB=$(run_load pingora-bare "${URL[pingora-bare]}")
read -r LD_P50 LD_P99 _ <<<"$LD"
read -r LP_P50 LP_P99 _ <<<"$LP"
read -r LB_P50 LB_P99 _ <<<"$LB"

# ---- summary --------------------------------------------------------------------------------
echo
echo "proxy comparison — $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores, backend demo-web /whoami"
echo "P1: wrk -t$WRK_THREADS -c$CONNS -d$DURATION --latency, $ROUNDS interleaved rounds (medians);" \
  "$PROXY_THREADS workers each"
echo "    acs-proxy $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet -- crates/proxy 2>/dev/null || echo '+dirty'), $("$(bin nginx)" -v 2>&1 | sed 's/.*: //'), $("$(bin haproxy)" -v | head -n1 | awk '{print "HAProxy", $3}')"
echo
printf '%-12s %12s %10s %10s %10s %10s %8s  %s\n' target "req/s" "p50 ms" "p99 ms" "vs nginx" "vs haproxy" errors "rounds (req/s)"
printf '%-12s %12s %10s %10s %10s %10s %8s  %s\n' ------------ ------------ ---------- ---------- ---------- ---------- -------- --------------
for t in "${TARGETS[@]}"; do
  printf '%-12s %12.0f %10.3f %10.3f %10s %10s %8s  %s\n' "$t" "${M_RPS[$t]}" "${M_P50[$t]}" "${M_P99[$t]}" \
    "$(ratio "${M_RPS[$t]}" "${M_RPS[nginx]}")" "$(ratio "${M_RPS[$t]}" "${M_RPS[haproxy]}")" \
    "${ERR[$t]}" "${RPS[$t]}"
done
echo "acs-proxy / pingora-bare: $(ratio "${M_RPS[acs-proxy]}" "${M_RPS[pingora-bare]}")"
echo
echo "P2: acsctl load URL --rps $RATE --duration $LOAD_DURATION (open loop; half of acs-proxy's peak unless LOAD_RPS)"
printf '%-12s %10s %10s  %s\n' target "p50 ms" "p99 ms" "acsctl total line"
printf '%-12s %10s %10s  %s\n' ------------ ---------- ---------- -----------------
printf '%-12s %10s %10s  %s\n' direct "$LD_P50" "$LD_P99" "${LD#*| }"
printf '%-12s %10s %10s  %s\n' acs-proxy "$LP_P50" "$LP_P99" "${LP#*| }"
printf '%-12s %10s %10s  %s\n' pingora-bare "$LB_P50" "$LB_P99" "${LB#*| }"
printf '%-12s %10s %10s\n' "added" "$(diff_ms "$LP_P50" "$LD_P50")" "$(diff_ms "$LP_P99" "$LD_P99")"
printf '%-12s %10s %10s\n' "bare added" "$(diff_ms "$LB_P50" "$LD_P50")" "$(diff_ms "$LB_P99" "$LD_P99")"
echo
