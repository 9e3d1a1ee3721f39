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
