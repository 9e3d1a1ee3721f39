# bench/lib.sh — the one header of every bench script; sourced, not run:
#   BENCH_TAG=name; source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# Leaves the shell in the repository root with ROOT, TARGET_DIR, REL (the release binaries) and
# an empty PIDS (what stop_pids stops). Ports come from 20000–31999, below Linux's ephemeral
# range, so a port handed out here is not taken by an outgoing connection meanwhile.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
REL="$TARGET_DIR/release"
PIDS=()

log() { printf '[%s] %s\n' "${BENCH_TAG:-bench}" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# WORK: a fresh temporary directory named after the script; on exit (or INT/TERM) every process
# in PIDS is stopped and WORK removed.
bench_workdir() {
  WORK=$(mktemp -d -t "acs-$1.XXXXXX")
  trap 'stop_pids; remove_work' EXIT
  trap 'exit 1' INT TERM
}
# Removes WORK, unless KEEP_WORK is set (then says where it is).
remove_work() {
  if [[ -n "${KEEP_WORK:-}" ]]; then log "work dir kept: $WORK"; else rm -rf "$WORK"; fi
}
# Stops every process in PIDS, newest first (a client before the server it talks to): SIGTERM,
# then SIGKILL after 5 s.
stop_pids() {
  local pid i
  for (( i = ${#PIDS[@]} - 1; i >= 0; i-- )); do
    pid=${PIDS[$i]}
    [[ -n "$pid" ]] || continue
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  PIDS=()
}

# A plain nats-server for this run on a free loopback port (log in WORK): sets NATS_PORT and
# NATS_URL.
start_nats() {
  NATS_PORT=$(free_port)
  "$(bin nats-server)" -a 127.0.0.1 -p "$NATS_PORT" >"$WORK/nats.log" 2>&1 &
  PIDS+=($!)
  wait_port "$NATS_PORT" nats-server
  NATS_URL="nats://127.0.0.1:$NATS_PORT"
}

# A nats-server with JetStream (store and log in WORK, named after TAG) and its monitoring port:
# sets NATS_PORT, HTTP_PORT, NATS_PID and NATS_URL.
start_nats_js() { # tag
  NATS_PORT=$(free_port); HTTP_PORT=$(free_port)
  mkdir -p "$WORK/js-$1"
  cat >"$WORK/nats-$1.conf" <<EOF
listen: 127.0.0.1:$NATS_PORT
http: 127.0.0.1:$HTTP_PORT
jetstream { store_dir: "$WORK/js-$1" }
EOF
  "$(bin nats-server)" -c "$WORK/nats-$1.conf" >"$WORK/nats-$1.log" 2>&1 &
  NATS_PID=$!
  PIDS+=("$NATS_PID")
  wait_port "$NATS_PORT" nats-server
  NATS_URL="nats://127.0.0.1:$NATS_PORT"
}

# What a benchmark on a local cluster needs installed (nats-server in /usr/sbin on Debian).
local_cluster_deps() {
  scripts/install-deps.sh >/dev/null
  export PATH="$PATH:/usr/sbin"
}

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

# 0 when URL answers 200 within about 10 s; else 1, or die naming WHAT when it is given.
wait_http() { # url [what]
  for _ in $(seq 1 100); do
    [[ $(curl -s -o /dev/null -w '%{http_code}' "$1" 2>/dev/null) == 200 ]] && return 0
    sleep 0.1
  done
  [[ -z "${2:-}" ]] || die "$2 does not answer 200 on $1"
  return 1
}

# wrk: a run into WORK (uses WRK_THREADS and CONNS), and its --latency output read back.
run_wrk() { # name url duration -> output file
  local out="$WORK/wrk-$1.txt"
  wrk -t"$WRK_THREADS" -c"$CONNS" -d"$3" --latency "$2" >"$out" 2>&1 || { cat "$out" >&2; die "wrk failed for $1"; }
  echo "$out"
}
to_ms() { # wrk value with unit (us|ms|s) -> ms
  awk -v v="$1" 'BEGIN {
    if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
    else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
    else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
    else printf "%s", v }'
}
parse_wrk() { # file -> "rps p50_ms p99_ms errors requests"
  local rps p50 p99 errs reqs
  rps=$(awk '/^Requests\/sec:/ {print $2}' "$1")
  reqs=$(awk '/requests in/ {print $1}' "$1")
  p50=$(awk '$1 == "50%" {print $2}' "$1")
  p99=$(awk '$1 == "99%" {print $2}' "$1")
  errs=$(awk '/Socket errors:/ {gsub(",", ""); s += $4 + $6 + $8 + $10}
              /Non-2xx or 3xx responses:/ {s += $NF} END {print s + 0}' "$1")
  echo "${rps:-0} $(to_ms "${p50:-0}") $(to_ms "${p99:-0}") ${errs:-0} ${reqs:-0}"
}

# Figures: the median of the numbers on stdin (0 for none), a / b, a - b.
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR] = $1} END {
  if (NR == 0) print 0; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
diff_ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%+.3f", a - b }'; }

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
  local p
  for _ in $(seq 1 200); do
    p=$(( 20000 + RANDOM % 12000 ))
    if ! port_in_use "$p"; then echo "$p"; return 0; fi
  done
  die "no free port found"
}
wait_port() { # port what
  for _ in $(seq 1 300); do port_in_use "$1" && return 0; sleep 0.05; done
  die "$2 did not listen on 127.0.0.1:$1"
}

# CPU and memory of a process, from /proc.
CLK_TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; } # utime + stime
now_s() { date +%s.%N; }
cpu_pct() { # ticks0 ticks1 t0 t1: % of one core between the two readings
  awk -v a="$1" -v b="$2" -v t0="$3" -v t1="$4" -v hz="$CLK_TCK" 'BEGIN { printf "%.1f", (b - a) / hz / (t1 - t0) * 100 }'
}
rss_mb() { awk -v k="${2:-VmRSS}:" '$1 == k {printf "%.0f", $2 / 1024}' "/proc/$1/status" 2>/dev/null || echo "?"; } # pid [VmRSS|VmHWM]

# The nginx and HAProxy set-ups the proxy benchmarks compare against (access logs off,
# upstream keep-alive 64 / http-reuse always, one demo-web backend), so each does its best case.
nginx_conf() { # dir listen-port backend-port workers master(on|off) connections
  local dir=$1 port=$2 be=$3 workers=$4 master=$5 conns=$6
  mkdir -p "$dir/tmp"
  cat >"$dir/nginx.conf" <<NGINX
daemon off;
master_process $master;
worker_processes $workers;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections $conns; }
http {
  access_log off;
  client_body_temp_path $dir/tmp/body;
  proxy_temp_path $dir/tmp/proxy;
  fastcgi_temp_path $dir/tmp/fastcgi;
  uwsgi_temp_path $dir/tmp/uwsgi;
  scgi_temp_path $dir/tmp/scgi;
  upstream backend {
    server 127.0.0.1:$be;
    keepalive 64;
  }
  server {
    listen 127.0.0.1:$port;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
NGINX
}

haproxy_cfg() { # file listen-port backend-port threads connections
  cat >"$1" <<HAPROXY
global
  nbthread $4
  maxconn $5
defaults
  mode http
  timeout connect 1s
  timeout client 30s
  timeout server 30s
  http-reuse always
frontend fe
  bind 127.0.0.1:$2
  default_backend be
backend be
  server be1 127.0.0.1:$3
HAPROXY
}
