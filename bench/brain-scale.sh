#!/usr/bin/env bash
# brain-scale.sh — the brain at scale (target P6 of docs/PERFORMANCE.md): simulated workers
# publishing real WorkerMetrics over NATS at 1 s, 1,000 then 10,000 of them, 10 replicas each.
#
# For each N, on a fresh nats-server (JetStream, loopback, a temp dir, free ports):
#   - a services file with SERVICE_COUNT services (s0, s1, ...) whose min = max = the replicas
#     the simulator runs of each (N * REPLICAS / SERVICE_COUNT), so nothing is placed or
#     stopped; plus `burst` (min 0, max BURST), which no simulated worker runs;
#   - the release vim-brain (one brain, the leader) with GET /metrics behind a bearer token;
#   - `acs-sim workers --count N`; WARMUP seconds; then over MEASURE seconds of steady state:
#     the brain's CPU% of one core (utime+stime from /proc/<pid>/stat), RSS (VmRSS at the end,
#     VmHWM peak), its decision loop p50/p99/max (acs_brain_decision_loop_seconds, scraped
#     before and after: quantiles interpolated within buckets as Prometheus does, max as the
#     upper bound of the highest bucket reached), inbox lag (acs_brain_inbox_lag_seconds, max
#     of samples each second) and backlog;
#   - `acsctl status` (default summary) and `acsctl status --json`: whether they work, reply size;
#   - a burst: `acsctl scale burst BURST` (from 0): the passes it causes (the one the request
#     prompts, and one per failed start, since simulated workers do not answer commands), their
#     p50/p99/max, and the time from the request to the brain's first `place` decisions;
#   - the largest message the brain published, by kind, vs the 256 KiB limit every subscriber
#     enforces (acs_brain_largest_message_bytes), and messages over it.
# With PERF=1, also `perf record -e cpu-clock -g` of the brain over the measure window; the top
# of `perf report` is kept in the work dir (KEEP_WORK=1 keeps it).
# Prints one table.
#
# Usage: bench/brain-scale.sh            (about 1.5 min per N after the build)
#   COUNTS="1000 10000" REPLICAS=10 SERVICE_COUNT=10 WARMUP=15 MEASURE=30 BURST=100 bench/brain-scale.sh
#
# Security: NATS runs without authentication, bound to 127.0.0.1 only, for this run; the
# brain's metrics listen on 127.0.0.1 and want a bearer token from a 0600 file.
set -euo pipefail

COUNTS=${COUNTS:-"1000 10000"}
REPLICAS=${REPLICAS:-10}
SERVICE_COUNT=${SERVICE_COUNT:-10}
WARMUP=${WARMUP:-15}
MEASURE=${MEASURE:-30}
BURST=${BURST:-100}
PERF=${PERF:-}

BENCH_TAG=bench
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_workdir brain-scale

for tool in curl awk; do command -v "$tool" >/dev/null || die "$tool missing"; done
[[ -x "$(bin nats-server)" ]] || die "nats-server missing: scripts/install-deps.sh"
(( REPLICAS % SERVICE_COUNT == 0 )) || die "REPLICAS ($REPLICAS) must be a multiple of SERVICE_COUNT ($SERVICE_COUNT)"

log "building release binaries (vim-brain, acs-sim, acsctl)"
cargo build --release -q -p vim-brain -p acs-sim -p acsctl --bin vim-brain --bin acs-sim --bin acsctl

TOKEN_FILE="$WORK/metrics.token"
(umask 077; head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$TOKEN_FILE")
scrape() { curl -sf -H "Authorization: Bearer $(cat "$TOKEN_FILE")" "$METRICS_URL/metrics"; }
# "le count" lines of the decision loop histogram (cumulative), then "count N".
loop_hist() { scrape | awk '
  /^acs_brain_decision_loop_seconds_bucket/ { match($0, /le="[^"]*"/); le = substr($0, RSTART + 4, RLENGTH - 5); print le, $2 }
  /^acs_brain_decision_loop_seconds_count/ { print "count", $2 }'; }
# Quantiles between two histogram scrapes: "p50 p99 max passes" in ms.
loop_stats() { # before-file after-file
  awk '
    NR == FNR { before[$1] = $2; next }
    $1 == "count" { n = $2 - before["count"]; next }
    { les[++k] = $1; c[k] = $2 - before[$1] }
    function q(p,   i, lo, prev, target, up) {
      target = p * n; prev = 0; lo = 0
      for (i = 1; i <= k; i++) {
        if (c[i] >= target) {
          up = (les[i] == "+Inf") ? lo : les[i]
          if (c[i] == prev) return up * 1000
          return (lo + (up - lo) * (target - prev) / (c[i] - prev)) * 1000
        }
        prev = c[i]; if (les[i] != "+Inf") lo = les[i]
      }
      return lo * 1000
    }
    END {
      if (n <= 0) { print "- - - 0"; exit }
      mx = "-"
      for (i = 1; i <= k; i++) if (c[i] == n) { mx = (les[i] == "+Inf") ? ">" les[i-1] * 1000 : "<=" les[i] * 1000; break }
      printf "%.1f %.1f %s %d\n", q(0.5), q(0.99), mx, n
    }' "$1" "$2"
}
metric() { # name{labels} -> value (0 if absent)
  scrape | awk -v m="$1" '$1 == m { v = $2 } END { print v + 0 }'
}
largest() { # "kind=bytes ..." sorted by size, and the oversize total
  scrape | awk '
    /^acs_brain_largest_message_bytes/ { match($0, /kind="[^"]*"/); k = substr($0, RSTART + 6, RLENGTH - 7); printf "%s %d\n", k, $2 }' |
    sort -k2 -nr | awk '{ printf "%s%s=%d", (NR > 1 ? " " : ""), $1, $2 } END { print "" }'
}
oversize() { scrape | awk '/^acs_brain_oversize_messages_total/ { s += $2 } END { print s + 0 }'; }

acsctl() { "$REL/acsctl" --nats "$NATS_URL" --nats-insecure --timeout 5s "$@"; }

ROWS=(); NOTES=()
row() { ROWS+=("$(printf '%s|' "$@")"); }

for N in $COUNTS; do
  log "=== N=$N workers x $REPLICAS replicas, $SERVICE_COUNT services ==="
  PER=$(( N * REPLICAS / SERVICE_COUNT ))
  start_nats_js "$N"
  METRICS_PORT=$(free_port)
  METRICS_URL="http://127.0.0.1:$METRICS_PORT"

  SERVICES_FILE="$WORK/services-$N.toml"
  SIM_SERVICES=""
  : >"$SERVICES_FILE"
  for i in $(seq 0 $(( SERVICE_COUNT - 1 ))); do
    SIM_SERVICES+="${SIM_SERVICES:+,}s$i"
    cat >>"$SERVICES_FILE" <<EOF
[[service]]
name = "s$i"
command = ["demo-web", "--port", "{port}"]
route = { path_prefix = "/s$i" }
policy = { min_replicas = $PER, max_replicas = $PER, target_cpu_pct = 70 }

EOF
  done
  cat >>"$SERVICES_FILE" <<EOF
[[service]]
name = "burst"
command = ["demo-web", "--port", "{port}"]
route = { path_prefix = "/burst" }
policy = { min_replicas = 0, max_replicas = $BURST, target_cpu_pct = 70 }
EOF
  "$REL/vim-brain" --check --services "$SERVICES_FILE" >/dev/null || die "services file refused: $SERVICES_FILE"

  RUST_LOG=${BRAIN_LOG:-info} "$REL/vim-brain" --services "$SERVICES_FILE" --nats "$NATS_URL" --nats-insecure \
    --metrics-listen "127.0.0.1:$METRICS_PORT" --metrics-token-file "$TOKEN_FILE" \
    >"$WORK/brain-$N.log" 2>&1 &
  BRAIN_PID=$!
  PIDS+=("$BRAIN_PID")
  wait_port "$METRICS_PORT" "vim-brain metrics"

  "$REL/acs-sim" --nats "$NATS_URL" --nats-insecure workers --count "$N" --replicas "$REPLICAS" \
    --services "$SIM_SERVICES" --interval 1s >"$WORK/sim-$N.txt" 2>"$WORK/sim-$N.err" &
  SIM_PID=$!
  PIDS+=("$SIM_PID")
  log "warm-up ${WARMUP}s"
  sleep "$WARMUP"
  kill -0 "$SIM_PID" 2>/dev/null || { cat "$WORK/sim-$N.err" >&2; die "acs-sim workers died"; }
  kill -0 "$BRAIN_PID" 2>/dev/null || { tail -n 20 "$WORK/brain-$N.log" >&2; die "vim-brain died"; }
  [[ $(metric acs_brain_leader) == 1 ]] || die "the brain is not the leader after warm-up (log: $WORK/brain-$N.log)"

  # --- steady state ---
  log "steady state: ${MEASURE}s"
  loop_hist >"$WORK/h0-$N"
  B0=$(cpu_ticks "$BRAIN_PID"); S0=$(cpu_ticks "$SIM_PID"); X0=$(cpu_ticks "$NATS_PID"); T0=$(now_s)
  if [[ -n "$PERF" ]]; then
    perf record -e cpu-clock ${PERF_CALLGRAPH:--g} -p "$BRAIN_PID" -o "$WORK/perf-$N.data" -- sleep "$(( MEASURE < 15 ? MEASURE : 15 ))" \
      >/dev/null 2>"$WORK/perf-$N.err" &
    PERF_PID=$!
  fi
  MAX_LAG=0; MAX_BACKLOG=0
  END=$(( $(date +%s) + MEASURE ))
  while (( $(date +%s) < END )); do
    LAG=$(metric acs_brain_inbox_lag_seconds); BL=$(metric acs_brain_inbox_backlog)
    MAX_LAG=$(awk -v a="$MAX_LAG" -v b="$LAG" 'BEGIN { print (b > a) ? b : a }')
    (( BL > MAX_BACKLOG )) && MAX_BACKLOG=$BL
    sleep 1
  done
  B1=$(cpu_ticks "$BRAIN_PID"); S1=$(cpu_ticks "$SIM_PID"); X1=$(cpu_ticks "$NATS_PID"); T1=$(now_s)
  loop_hist >"$WORK/h1-$N"
  if [[ -n "$PERF" ]]; then
    wait "$PERF_PID" 2>/dev/null || true
    perf report -i "$WORK/perf-$N.data" --no-children --percent-limit 1.5 --stdio 2>/dev/null \
      | grep -E '^ +[0-9]' | head -n 25 >"$WORK/perf-$N.txt" || true
    log "perf top (self) for N=$N:"; cat "$WORK/perf-$N.txt" >&2
  fi
  read -r P50 P99 MAX PASSES < <(loop_stats "$WORK/h0-$N" "$WORK/h1-$N")

  # --- acsctl status ---
  if acsctl status >"$WORK/status-$N.txt" 2>"$WORK/status-$N.err"; then
    STATUS="ok $(wc -c <"$WORK/status-$N.txt")B"
  else
    STATUS="FAIL"; NOTES+=("N=$N acsctl status: $(head -c 200 "$WORK/status-$N.err")")
  fi
  if acsctl status --json >"$WORK/status-$N.json" 2>"$WORK/status-$N.jerr"; then
    STATUS+=" / json ok"
  else
    STATUS+=" / json FAIL"; NOTES+=("N=$N acsctl status --json: $(head -c 200 "$WORK/status-$N.jerr")")
  fi

  # --- burst: scale burst from 0 to BURST ---
  log "burst: acsctl scale burst $BURST"
  loop_hist >"$WORK/b0-$N"
  PLACED0=$(metric 'acs_brain_placements_total{service="burst"}')
  TB=$(now_s)
  acsctl scale burst "$BURST" >"$WORK/scale-$N.txt" 2>&1 || { cat "$WORK/scale-$N.txt" >&2; die "acsctl scale failed"; }
  FIRST_MS="-"
  for _ in $(seq 1 200); do
    P=$(metric 'acs_brain_placements_total{service="burst"}')
    if (( P > PLACED0 )); then FIRST_MS=$(awk -v a="$TB" -v b="$(now_s)" 'BEGIN { printf "%.0f", (b - a) * 1000 }'); break; fi
    sleep 0.02
  done
  sleep 6
  loop_hist >"$WORK/b1-$N"
  PLACED=$(( $(metric 'acs_brain_placements_total{service="burst"}') - PLACED0 ))
  read -r BP50 BP99 BMAX BPASSES < <(loop_stats "$WORK/b0-$N" "$WORK/b1-$N")

  LARGEST=$(largest); OVER=$(oversize)
  FAILED_PUB=$(grep -c 'publish failed' "$WORK/brain-$N.log" || true)
  SIM_LINE=$(grep '^workers: t=' "$WORK/sim-$N.txt" | tail -n 1 || true)
  SENT=$(sed -n 's/.*sent\/s=\([0-9.]*\).*/\1/p' <<<"$SIM_LINE")
  row "$N" "${SENT:--}" "$(cpu_pct "$B0" "$B1" "$T0" "$T1")" "$(rss_mb "$BRAIN_PID")/$(rss_mb "$BRAIN_PID" VmHWM)" \
    "$P50/$P99/$MAX ($PASSES)" "$MAX_LAG s / $MAX_BACKLOG" "$BP50/$BP99/$BMAX ($BPASSES)" "$FIRST_MS ms, $PLACED" \
    "$OVER ($FAILED_PUB)" "$STATUS" "$(cpu_pct "$X0" "$X1" "$T0" "$T1")/$(cpu_pct "$S0" "$S1" "$T0" "$T1")"
  NOTES+=("N=$N largest published payload by kind (bytes): $LARGEST")
  grep -h -E 'WARN|ERROR' "$WORK/brain-$N.log" | grep -v 'command failed' | cut -c1-300 | sort | uniq -c | sort -nr | head -n 5 >&2 || true
  stop_pids
done

echo
echo "vim-brain at scale — $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores, load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "acs-sim workers --count N --replicas $REPLICAS --services s0..s$(( SERVICE_COUNT - 1 )) --interval 1s; min = max = running;"
echo "warm-up ${WARMUP}s, steady state ${MEASURE}s, then acsctl scale burst $BURST (from 0)"
echo
H='%-6s | %-9s | %-9s | %-9s | %-24s | %-14s | %-24s | %-13s | %-9s | %-22s | %-11s\n'
# shellcheck disable=SC2059
printf "$H" N "sim msg/s" "brain CPU%" "RSS MB" "loop p50/p99/max ms (n)" "lag max/backlog" "burst p50/p99/max ms (n)" "1st place,n" "oversize" "acsctl status" "nats%/sim%"
# shellcheck disable=SC2059
printf "$H" ------ --------- --------- --------- ------------------------ -------------- ------------------------ ------------- --------- ---------------------- -----------
for r in "${ROWS[@]}"; do
  IFS='|' read -r -a f <<<"$r"
  # shellcheck disable=SC2059
  printf "$H" "${f[@]}"
done
echo
echo "brain CPU%: of one core over the steady state. RSS MB: VmRSS at the end / VmHWM peak."
echo "loop: acs_brain_decision_loop_seconds over the steady state (event taken off the inbox to plan sent), n passes;"
echo "max is the upper bound of the highest bucket reached. lag: most acs_brain_inbox_lag_seconds sampled each second"
echo "(oldest report's age when taken); backlog: most messages folded in before one plan."
echo "burst: passes in the 6 s after acsctl scale (the request's pass, then one per failed start: simulated workers"
echo "do not answer commands); 1st place: request sent to the first start counted; n: starts sent."
echo "oversize: payloads the brain published over 256 KiB (publishes NATS refused, from the log)."
for n in "${NOTES[@]}"; do echo "$n"; done
