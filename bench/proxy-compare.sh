#!/usr/bin/env bash
# proxy-compare.sh — acs-proxy side by side with nginx and HAProxy (targets P1 and P2 of
# docs/PERFORMANCE.md).
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

BENCH_TAG=compare
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_workdir proxy-compare

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
start_nats

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
    read -r rps p50 p99 errs _ < <(parse_wrk "$(run_wrk "$t-$r" "${URL[$t]}" "$DURATION")")
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
