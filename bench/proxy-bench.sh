#!/usr/bin/env bash
# proxy-bench.sh — what acs-proxy costs, and how fast it follows the brain.
#
# In one run, on this machine (everything on loopback):
#   1. throughput and latency (wrk: req/s, p50, p99) straight to a backend vs through acs-proxy,
#      with the same connections and duration, and the ratio between them;
#   2. route propagation: time from publishing a backend `add` on NATS until the proxy routes
#      to the new backend (crates/proxy/examples/route_latency.rs, N samples, p50/p99).
#
# Usage: bench/proxy-bench.sh            (env knobs below; a run takes ~1 min after the build)
#   DURATION=10s CONNS=32 WRK_THREADS=2 PROXY_THREADS=2 SAMPLES=50 bench/proxy-bench.sh
#
# Needs: cargo, nats-server, wrk (installed with apt-get when missing). The backend is demo-web
# (`demo-web --port N --id X --work-ms 0`, GET /whoami); if it cannot be built or does not
# answer, a stand-in (examples/bench_backend.rs) is used and the summary says so.
# Note: wrk, the proxy and the backend share this machine's cores, so the ratio is a lower
# bound of what the proxy does on its own hardware.
set -euo pipefail

DURATION=${DURATION:-10s}
CONNS=${CONNS:-32}
WRK_THREADS=${WRK_THREADS:-2}
PROXY_THREADS=${PROXY_THREADS:-2}
SAMPLES=${SAMPLES:-50}
WARMUP=${WARMUP:-2s}

BENCH_TAG=bench
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_workdir proxy-bench

# CPU time per request, in µs, from clock ticks used over a run.
us_per_req() { # ticks requests
  awk -v t="$1" -v n="$2" -v hz="$CLK_TCK" 'BEGIN { if (n > 0) printf "%.1f", t / hz * 1e6 / n; else print "n/a" }'
}

# ---- prerequisites --------------------------------------------------------------------------
ensure_pkg wrk wrk
ensure_pkg nats-server nats-server
ensure_pkg curl curl

log "building release binaries (first build of Pingora takes a few minutes)"
cargo build --release -q -p acs-proxy --bin acs-proxy --example route_latency --example bench_backend

BACKEND_KIND="demo-web"
if ! cargo build --release -q -p demo-web --bin demo-web 2>"$WORK/demo-web-build.log"; then
  log "demo-web does not build; using the stand-in backend"
  BACKEND_KIND="stand-in"
fi

# ---- processes ------------------------------------------------------------------------------
start_nats

BE_PORT=$(free_port)
start_backend() {
  if [[ $1 == demo-web ]]; then
    DEMO_BIND=127.0.0.1 RUST_LOG=warn "$REL/demo-web" --port "$BE_PORT" --id be1 --work-ms 0 \
      >"$WORK/backend.log" 2>&1 &
  else
    "$REL/examples/bench_backend" --port "$BE_PORT" --id be1 >"$WORK/backend.log" 2>&1 &
  fi
  PIDS+=($!)
  BACKEND_PID=$!
}
start_backend "$BACKEND_KIND"
if ! wait_http "http://127.0.0.1:$BE_PORT/whoami"; then
  if [[ $BACKEND_KIND == demo-web ]]; then
    log "demo-web does not answer GET /whoami; using the stand-in backend"
    kill "${PIDS[-1]}" 2>/dev/null || true
    BACKEND_KIND="stand-in"
    BE_PORT=$(free_port)
    start_backend stand-in
    wait_http "http://127.0.0.1:$BE_PORT/whoami" || die "the stand-in backend does not answer"
  else
    die "the backend does not answer"
  fi
fi

PROXY_PORT=$(free_port)
RUST_LOG=warn "$REL/acs-proxy" --listen "127.0.0.1:$PROXY_PORT" --nats "$NATS_URL" --nats-insecure --prefix acs \
  --id bench --metrics-interval 1s --threads "$PROXY_THREADS" >"$WORK/proxy.log" 2>&1 &
PIDS+=($!)
PROXY_PID=$!
wait_port "$PROXY_PORT" acs-proxy

log "publishing a reset for service 'bench' -> be1 (127.0.0.1:$BE_PORT)"
"$REL/examples/route_latency" --nats "$NATS_URL" --proxy "127.0.0.1:$PROXY_PORT" --service bench \
  --backend "be1=127.0.0.1:$BE_PORT" --setup-only

DIRECT_URL="http://127.0.0.1:$BE_PORT/whoami"
PROXY_URL="http://127.0.0.1:$PROXY_PORT/whoami"

# ---- throughput and latency -----------------------------------------------------------------
log "warm-up ($WARMUP each)"
run_wrk warm-direct "$DIRECT_URL" "$WARMUP" >/dev/null
run_wrk warm-proxy "$PROXY_URL" "$WARMUP" >/dev/null
log "wrk direct: -t$WRK_THREADS -c$CONNS -d$DURATION $DIRECT_URL"
B0=$(cpu_ticks "$BACKEND_PID")
read -r D_RPS D_P50 D_P99 D_ERR D_REQS < <(parse_wrk "$(run_wrk direct "$DIRECT_URL" "$DURATION")")
D_BE_CPU=$(us_per_req $(( $(cpu_ticks "$BACKEND_PID") - B0 )) "$D_REQS")
log "wrk proxy:  -t$WRK_THREADS -c$CONNS -d$DURATION $PROXY_URL"
B0=$(cpu_ticks "$BACKEND_PID"); X0=$(cpu_ticks "$PROXY_PID")
read -r P_RPS P_P50 P_P99 P_ERR P_REQS < <(parse_wrk "$(run_wrk proxy "$PROXY_URL" "$DURATION")")
P_BE_CPU=$(us_per_req $(( $(cpu_ticks "$BACKEND_PID") - B0 )) "$P_REQS")
P_PX_CPU=$(us_per_req $(( $(cpu_ticks "$PROXY_PID") - X0 )) "$P_REQS")

# ---- route propagation ----------------------------------------------------------------------
log "route propagation: $SAMPLES samples of publish(add) -> first answer from the new backend"
RL_OUT=$("$REL/examples/route_latency" --nats "$NATS_URL" --proxy "127.0.0.1:$PROXY_PORT" \
  --service bench --backend "be1=127.0.0.1:$BE_PORT" --samples "$SAMPLES")
RL_P50=$(sed -n 's/.*p50_ms=\([0-9.]*\).*/\1/p' <<<"$RL_OUT")
RL_P99=$(sed -n 's/.*p99_ms=\([0-9.]*\).*/\1/p' <<<"$RL_OUT")
RL_MAX=$(sed -n 's/.*max_ms=\([0-9.]*\).*/\1/p' <<<"$RL_OUT")

# ---- summary --------------------------------------------------------------------------------

echo
echo "acs-proxy benchmark — $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores, backend: $BACKEND_KIND"
echo "wrk -t$WRK_THREADS -c$CONNS -d$DURATION GET /whoami; proxy --threads $PROXY_THREADS"
echo
printf '%-22s %14s %14s %14s\n' "" "direct" "via proxy" "proxy/direct"
printf '%-22s %14s %14s %14s\n' "----------------------" "--------------" "--------------" "--------------"
printf '%-22s %14.0f %14.0f %14s\n' "requests/s" "$D_RPS" "$P_RPS" "$(ratio "$P_RPS" "$D_RPS")"
printf '%-22s %14.3f %14.3f %14s\n' "latency p50 (ms)" "$D_P50" "$P_P50" "$(diff_ms "$P_P50" "$D_P50")"
printf '%-22s %14.3f %14.3f %14s\n' "latency p99 (ms)" "$D_P99" "$P_P99" "$(diff_ms "$P_P99" "$D_P99")"
printf '%-22s %14s %14s\n' "errors (non-2xx/sock)" "$D_ERR" "$P_ERR"
printf '%-22s %14s %14s\n' "backend CPU us/req" "$D_BE_CPU" "$P_BE_CPU"
printf '%-22s %14s %14s\n' "proxy CPU us/req" "-" "$P_PX_CPU"
echo
printf '%-38s %10s %10s %10s\n' "route propagation (publish -> routed)" "p50 ms" "p99 ms" "max ms"
printf '%-38s %10s %10s %10s\n' "add, $SAMPLES samples" "$RL_P50" "$RL_P99" "$RL_MAX"
echo
