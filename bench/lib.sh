# bench/lib.sh — what the bench scripts share; sourced, not run. Set BENCH_TAG first (the log
# prefix). Ports come from 20000–31999, below Linux's ephemeral range, so a port handed out here
# is not taken by an outgoing connection meanwhile.

log() { printf '[%s] %s\n' "${BENCH_TAG:-bench}" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

nats_bin() { command -v nats-server 2>/dev/null || echo /usr/sbin/nats-server; }
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
