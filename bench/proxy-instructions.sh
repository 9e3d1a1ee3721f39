#!/usr/bin/env bash
# proxy-instructions.sh — instructions per proxied request (target P1 of docs/PERFORMANCE.md),
# counted by `valgrind --tool=callgrind`, which counts instructions rather than time: the same
# binary and requests give the same count however busy the machine is, unlike req/s.
#
# One run, on loopback, against one demo-web backend (GET /whoami, keep-alive), each proxy with
# ONE worker thread or process so that no count is lost to a thread callgrind does not see:
#   acs-proxy     --threads 1, routes from a real nats-server (a reset published once)
#   pingora-bare  crates/proxy/examples/bare_pingora.rs: the same Pingora, an empty ProxyHttp
#   nginx         worker_processes 1, master_process off, upstream keepalive 64
#   haproxy       nbthread 1, http-reuse always
# For each: warm up with `wrk -t1 -c8 -d3s`, zero callgrind's counters (callgrind_control -z),
# run `wrk -t1 -c8 -d$DURATION`, dump (callgrind_control -d), and divide the instructions (all
# threads, the idle timer threads included) by the requests wrk completed. Also measures each
# proxy idle for $DURATION, so that background work can be told apart from per-request work.
# Prints one table.
#
# Usage: bench/proxy-instructions.sh        (about 2 min after the build)
#   DURATION=10s bench/proxy-instructions.sh
#
# Security: nats-server without authentication, bound to 127.0.0.1, for this run only.
set -euo pipefail

DURATION=${DURATION:-10s}
BENCH_TAG=proxy-instructions
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_workdir proxy-instr


export PATH="$PATH:/usr/sbin"
for cmd in valgrind callgrind_control wrk nginx haproxy; do
  command -v "$cmd" >/dev/null || die "$cmd not found (apt-get install valgrind wrk nginx haproxy)"
done
log "building release binaries"
cargo build --release -q -p acs-proxy --bin acs-proxy --example route_latency --example bare_pingora \
  -p demo-web --bin demo-web

BE=$(free_port)
"$REL/demo-web" --port "$BE" --id be1 --work-ms 0 >"$WORK/backend.log" 2>&1 &
PIDS+=($!)
wait_port "$BE" demo-web

NATS=$(free_port)
"$(bin nats-server)" -a 127.0.0.1 -p "$NATS" >"$WORK/nats.log" 2>&1 &
PIDS+=($!)
wait_port "$NATS" nats-server

cg() { # name out-file cmd... : runs cmd under callgrind in the background, pid in CG_PID
  local name=$1 out=$2
  shift 2
  valgrind --tool=callgrind --callgrind-out-file="$out" "$@" >"$WORK/$name.log" 2>&1 &
  CG_PID=$!
  PIDS+=("$CG_PID")
}

declare -A PORT PID
PORT[acs-proxy]=$(free_port)
cg acs-proxy "$WORK/cg.acs-proxy" "$REL/acs-proxy" --listen "127.0.0.1:${PORT[acs-proxy]}" \
  --nats "nats://127.0.0.1:$NATS" --nats-insecure --threads 1 --id p1
PID[acs-proxy]=$CG_PID

PORT[pingora-bare]=$(free_port)
cg pingora-bare "$WORK/cg.pingora-bare" "$REL/examples/bare_pingora" \
  --listen "127.0.0.1:${PORT[pingora-bare]}" --upstream "127.0.0.1:$BE" --threads 1
PID[pingora-bare]=$CG_PID

PORT[nginx]=$(free_port)
nginx_conf "$WORK/nginx" "${PORT[nginx]}" "$BE" 1 off 1024
cg nginx "$WORK/cg.nginx" "$(command -v nginx)" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf"
PID[nginx]=$CG_PID

PORT[haproxy]=$(free_port)
haproxy_cfg "$WORK/haproxy.cfg" "${PORT[haproxy]}" "$BE" 1 1024
cg haproxy "$WORK/cg.haproxy" "$(command -v haproxy)" -f "$WORK/haproxy.cfg"
PID[haproxy]=$CG_PID

TARGETS=(acs-proxy pingora-bare nginx haproxy)
for t in "${TARGETS[@]}"; do wait_port "${PORT[$t]}" "$t"; done
log "publishing a route for acs-proxy"
"$REL/examples/route_latency" --nats "nats://127.0.0.1:$NATS" --proxy "127.0.0.1:${PORT[acs-proxy]}" \
  --service bench --backend "be1=127.0.0.1:$BE" --setup-only >"$WORK/route.log" 2>&1

# Instructions in the newest dump of `name` (all threads).
dumped() {
  local f
  f=$(ls -t "$WORK/cg.$1".* 2>/dev/null | grep -v "cg.$1\$" | head -1)
  [[ -n "$f" ]] || { echo 0; return; }
  awk '/^(summary|totals):/ {print $2; exit}' "$f"
}
measure() { # name -> "instructions requests" over DURATION of load (or idle with IDLE=1)
  local t=$1 pid=${PID[$1]} url="http://127.0.0.1:${PORT[$1]}/whoami" n=0
  callgrind_control -z "$pid" >/dev/null
  if [[ -n "${IDLE:-}" ]]; then
    sleep "${DURATION%s}"
  else
    n=$(wrk -t1 -c8 -d"$DURATION" "$url" | awk '/requests in/ {print $1}')
  fi
  callgrind_control -d "$pid" >/dev/null
  sleep 1
  echo "$(dumped "$t") $n"
}

declare -A IR REQ IDLE_IR
for t in "${TARGETS[@]}"; do
  log "$t: warm-up, then wrk -t1 -c8 -d$DURATION under callgrind"
  wrk -t1 -c8 -d3s "http://127.0.0.1:${PORT[$t]}/whoami" >/dev/null
  read -r IR[$t] REQ[$t] < <(measure "$t")
  read -r IDLE_IR[$t] _ < <(IDLE=1 measure "$t")
done

printf '\nproxy instructions per request — %s, %s, callgrind (valgrind %s)\n' \
  "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(git rev-parse --short HEAD 2>/dev/null || echo ?)" \
  "$(valgrind --version | sed 's/valgrind-//')"
printf 'wrk -t1 -c8 -d%s GET /whoami, keep-alive; one worker thread/process each; idle: the same time with no load\n\n' "$DURATION"
printf '%-14s %14s %9s %12s %11s %12s %10s\n' target instructions requests "instr/req" "vs nginx" "vs haproxy" "idle instr"
per_req() { local ir=${IR[$1]} n=${REQ[$1]}; (( n > 0 )) && echo $(( ir / n )) || echo 0; }
base_n=$(per_req nginx)
base_h=$(per_req haproxy)
times() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "?" }'; }
for t in "${TARGETS[@]}"; do
  per=$(per_req "$t")
  printf '%-14s %14s %9s %12s %11s %12s %10s\n' "$t" "${IR[$t]}" "${REQ[$t]}" "$per" \
    "$(times "$per" "$base_n")" "$(times "$per" "$base_h")" "${IDLE_IR[$t]}"
done
per_a=$(per_req acs-proxy)
per_b=$(per_req pingora-bare)
printf '\nacs-proxy over pingora-bare: %+d instructions per request (%s)\n' "$(( per_a - per_b ))" \
  "$(awk -v a="$per_a" -v b="$per_b" 'BEGIN { if (b > 0) printf "%+.1f %%", (a - b) / b * 100; else print "?" }')"
