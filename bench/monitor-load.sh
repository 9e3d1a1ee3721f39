#!/usr/bin/env bash
# monitor-load.sh — the monitor under load (docs/PERFORMANCE.md, "the monitor under load"):
# simulated workers publishing real WorkerMetrics over NATS at 1 s, 1,000 then 10,000 of them.
#
# For each N, on a fresh nats-server (JetStream, loopback, a temp dir, free ports):
#   1. one acs-monitor; `acs-sim workers --count N` publishing; WARMUP seconds; then, over one
#      `acs-sim query` run (QUERY_RATE/s for QUERY_DURATION, random workers/replicas/metrics/
#      windows, open loop):
#      - ingestion lag: the monitor's JetStream consumer pending (max of samples taken every
#        second, from nats-server's /jsz), in messages and in seconds of publishing; and the age
#        of the newest 1 s point the monitor answers (probe queries; with no lag this is up to one
#        interval + one bucket, i.e. < 2 s);
#      - stats query latency p50/p99/max and errors;
#      - the monitor's CPU% (utime+stime from /proc/<pid>/stat over the query run) and RSS
#        (VmRSS at the end, VmHWM peak); nats-server's and the simulator's CPU% beside it;
#      - the monitor's RSS every RSS_EVERY seconds over the warm-up (does it plateau once the
#        raw ring and the minute tier are full?), and the ACS_ROLLUPS stream's size;
#   2. a second acs-monitor on the same stream (it replays it, then joins the `acs-monitor`
#      queue group); the same query run; how the queries split: each monitor's NATS
#      subscription on acs.monitor.stats counts the requests delivered to it (nats-server
#      /connz?subs=detail), before and after the run.
# Prints one table.
#
# Usage: bench/monitor-load.sh           (about 2 min per N after the build)
#   COUNTS="1000 10000" REPLICAS=10 SERVICES=web,api WARMUP=20 QUERY_RATE=50 QUERY_DURATION=20s \
#   STREAM_MAX_AGE_S=600 RSS_EVERY=10 MONITOR_ARGS="--raw-keep 10m" bench/monitor-load.sh
# The monitor's tiers are its defaults (raw 10 min in memory, 1 min buckets 1 h, 1 h buckets
# 2 h) unless MONITOR_ARGS says otherwise; the raw ring is full after 10 min, so a WARMUP of
# 660 or more shows the plateau (memory is allocated per series up front, so it shows early).
#
# Security: NATS runs without authentication, bound to 127.0.0.1 only, for this run; the
# monitor runs with --no-http (NATS only), so nothing else listens.
# Note: the simulator, nats-server and the monitor(s) share this machine's cores (2 here), so
# CPU figures are per process; a loaded machine shows as sim "behind" and as query latency.
set -euo pipefail

COUNTS=${COUNTS:-"1000 10000"}
REPLICAS=${REPLICAS:-10}
SERVICES=${SERVICES:-web,api}
WARMUP=${WARMUP:-20}
QUERY_RATE=${QUERY_RATE:-50}
QUERY_DURATION=${QUERY_DURATION:-20s}
STREAM_MAX_AGE_S=${STREAM_MAX_AGE_S:-600}
RSS_EVERY=${RSS_EVERY:-10}
MONITOR_ARGS=${MONITOR_ARGS:-}

BENCH_TAG=bench
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_workdir monitor-load

for tool in curl jq; do command -v "$tool" >/dev/null || die "$tool missing (apt-get install -y $tool)"; done
[[ -x "$(bin nats-server)" ]] || die "nats-server missing: scripts/install-deps.sh"

log "building release binaries (acs-monitor, acs-sim)"
cargo build --release -q -p acs-monitor -p acs-sim

# nats-server monitoring endpoint helpers (set per run: MON_URL).
connz() { curl -sf "$MON_URL/connz?subs=detail&limit=1000"; }
# "cid msgs" for every acs-monitor connection's subscription on the stats subject.
stats_subs() {
  connz | jq -r '.connections[]? | select(.name == "acs-monitor") | . as $c
    | (.subscriptions_list_detail // [])[] | select(.subject == "acs.monitor.stats")
    | "\($c.cid) \(.msgs)"'
}
stats_msgs() { stats_subs | awk -v c="$1" '$1 == c {n = $2} END {print n + 0}'; }
# Max num_pending over the ACS_METRICS stream's consumers.
js_pending() {
  curl -sf "$MON_URL/jsz?consumers=true" | jq '[.account_details[]?.stream_detail[]?
    | select(.name == "ACS_METRICS") | .consumer_detail[]?.num_pending] | max // 0'
}
wait_stats_sub() { # count timeout_s -> waits until that many monitors serve the stats subject
  local deadline=$(( $(date +%s) + $2 ))
  while (( $(date +%s) < deadline )); do
    [[ $(stats_subs | wc -l) -ge $1 ]] && return 0
    sleep 0.2
  done
  return 1
}

start_monitor() { # name -> sets MON_PID
  RUST_LOG=${MONITOR_LOG:-warn} "$REL/acs-monitor" --nats "$NATS_URL" --nats-insecure --no-http \
    --stream-max-age "${STREAM_MAX_AGE_S}s" $MONITOR_ARGS >"$WORK/$1.log" 2>&1 &
  MON_PID=$!
  PIDS+=("$MON_PID")
}

# Runs acs-sim query while sampling JetStream pending each second; sets Q_JSON and MAX_PENDING.
query_run() { # tag
  local out="$WORK/query-$1.txt"
  "$REL/acs-sim" --nats "$NATS_URL" --nats-insecure query --rate "$QUERY_RATE" --duration "$QUERY_DURATION" \
    --workers "$N" --replicas "$REPLICAS" --services "$SERVICES" --json >"$out" 2>"$WORK/query-$1.err" &
  local qpid=$!
  MAX_PENDING=0
  while kill -0 "$qpid" 2>/dev/null; do
    local p; p=$(js_pending 2>/dev/null || echo 0)
    (( p > MAX_PENDING )) && MAX_PENDING=$p
    sleep 1
  done
  wait "$qpid" || { cat "$WORK/query-$1.err" >&2; die "acs-sim query failed"; }
  Q_JSON=$(tail -n 1 "$out")
}
q() { jq -r "$1 // \"-\"" <<<"$Q_JSON"; }

ROWS=(); ROWS_BYTES=(); ROWS_STREAM=(); RSS_LINES=()
row() { ROWS+=("$(printf '%s|' "$@")"); }

for N in $COUNTS; do
  log "=== N=$N workers x $REPLICAS replicas ==="
  start_nats_js "$N"
  MON_URL="http://127.0.0.1:$HTTP_PORT"

  start_monitor "monA-$N"; MON_A=$MON_PID
  wait_stats_sub 1 30 || die "acs-monitor did not serve acs.monitor.stats (log: $WORK/monA-$N.log)"
  CID_A=$(stats_subs | awk '{print $1}' | head -n 1)

  "$REL/acs-sim" --nats "$NATS_URL" --nats-insecure workers --count "$N" --replicas "$REPLICAS" \
    --services "$SERVICES" --interval 1s >"$WORK/sim-$N.txt" 2>"$WORK/sim-$N.err" &
  SIM_PID=$!
  PIDS+=("$SIM_PID")
  log "warm-up ${WARMUP}s"
  RSS_T=()
  W0=$(date +%s)
  while (( $(date +%s) - W0 < WARMUP )); do
    sleep "$(( RSS_EVERY < WARMUP - ($(date +%s) - W0) ? RSS_EVERY : WARMUP - ($(date +%s) - W0) ))"
    RSS_T+=("$(( $(date +%s) - W0 ))s:$(rss_mb "$MON_A")")
  done
  RSS_LINES+=("N=$N: ${RSS_T[*]}")
  kill -0 "$SIM_PID" 2>/dev/null || { cat "$WORK/sim-$N.err" >&2; die "acs-sim workers died"; }

  # --- one monitor ---
  log "one monitor: query run"
  A0=$(cpu_ticks "$MON_A"); S0=$(cpu_ticks "$SIM_PID"); X0=$(cpu_ticks "$NATS_PID"); T0=$(now_s)
  M0=$(stats_msgs "$CID_A")
  query_run "$N-1"
  A1=$(cpu_ticks "$MON_A"); S1=$(cpu_ticks "$SIM_PID"); X1=$(cpu_ticks "$NATS_PID"); T1=$(now_s)
  M1=$(stats_msgs "$CID_A")
  SIM_LINE=$(grep '^workers: t=' "$WORK/sim-$N.txt" | tail -n 1 || true)
  SENT=$(sed -n 's/.*sent\/s=\([0-9.]*\).*/\1/p' <<<"$SIM_LINE")
  BEHIND=$(sed -n 's/.*behind_max_ms=\([0-9.]*\).*/\1/p' <<<"$SIM_LINE")
  MAXB=$(sed -n 's/.*max_bytes=\([0-9]*\).*/\1/p' <<<"$SIM_LINE")
  LAG_S=$(awk -v p="$MAX_PENDING" -v n="$N" 'BEGIN { printf "%.2f", p / n }')
  row "$N" 1 "${SENT:--}" "${BEHIND:--}" "$MAX_PENDING ($LAG_S s)" "$(q .age_p50_ms)/$(q .age_max_ms)" \
    "$(q .p50_ms)" "$(q .p99_ms)" "$(q .max_ms)" "$(q .errors)/$(q .sent)" \
    "$(cpu_pct "$A0" "$A1" "$T0" "$T1")" "$(rss_mb "$MON_A")/$(rss_mb "$MON_A" VmHWM)" \
    "$(cpu_pct "$X0" "$X1" "$T0" "$T1")" "$(cpu_pct "$S0" "$S1" "$T0" "$T1")" "A $((M1 - M0))" "-"

  # --- two monitors ---
  log "second monitor: replay, then join the queue group"
  TB=$(now_s)
  start_monitor "monB-$N"; MON_B=$MON_PID
  wait_stats_sub 2 300 || die "the second acs-monitor did not catch up within 300 s (log: $WORK/monB-$N.log)"
  REPLAY_S=$(awk -v a="$TB" -v b="$(now_s)" 'BEGIN { printf "%.1f", b - a }')
  CID_B=$(stats_subs | awk -v a="$CID_A" '$1 != a {print $1}' | head -n 1)
  sleep 2
  log "two monitors: query run"
  A0=$(cpu_ticks "$MON_A"); B0=$(cpu_ticks "$MON_B"); S0=$(cpu_ticks "$SIM_PID"); X0=$(cpu_ticks "$NATS_PID"); T0=$(now_s)
  MA0=$(stats_msgs "$CID_A"); MB0=$(stats_msgs "$CID_B")
  query_run "$N-2"
  A1=$(cpu_ticks "$MON_A"); B1=$(cpu_ticks "$MON_B"); S1=$(cpu_ticks "$SIM_PID"); X1=$(cpu_ticks "$NATS_PID"); T1=$(now_s)
  MA1=$(stats_msgs "$CID_A"); MB1=$(stats_msgs "$CID_B")
  SIM_LINE=$(grep '^workers: t=' "$WORK/sim-$N.txt" | tail -n 1 || true)
  SENT=$(sed -n 's/.*sent\/s=\([0-9.]*\).*/\1/p' <<<"$SIM_LINE")
  BEHIND=$(sed -n 's/.*behind_max_ms=\([0-9.]*\).*/\1/p' <<<"$SIM_LINE")
  LAG_S=$(awk -v p="$MAX_PENDING" -v n="$N" 'BEGIN { printf "%.2f", p / n }')
  row "$N" 2 "${SENT:--}" "${BEHIND:--}" "$MAX_PENDING ($LAG_S s)" "$(q .age_p50_ms)/$(q .age_max_ms)" \
    "$(q .p50_ms)" "$(q .p99_ms)" "$(q .max_ms)" "$(q .errors)/$(q .sent)" \
    "$(cpu_pct "$A0" "$A1" "$T0" "$T1")+$(cpu_pct "$B0" "$B1" "$T0" "$T1")" \
    "$(rss_mb "$MON_A")+$(rss_mb "$MON_B")" \
    "$(cpu_pct "$X0" "$X1" "$T0" "$T1")" "$(cpu_pct "$S0" "$S1" "$T0" "$T1")" \
    "A $((MA1 - MA0)) / B $((MB1 - MB0))" "$REPLAY_S"
  ROWS_BYTES+=("$N:${MAXB:-?}")
  STREAM_MSGS=$(curl -sf "$MON_URL/jsz?streams=true" | jq '[.account_details[]?.stream_detail[]? | select(.name == "ACS_METRICS") | .state.messages] | max // 0')
  ROLLUP_STATE=$(curl -sf "$MON_URL/jsz?streams=true" | jq -r '[.account_details[]?.stream_detail[]? | select(.name == "ACS_ROLLUPS") | .state] | first // {} | "\(.messages // 0) msgs, \((.bytes // 0) / 1048576 | floor) MB"')
  ROWS_STREAM+=("$N:$STREAM_MSGS (ACS_ROLLUPS: $ROLLUP_STATE)")

  grep -h -i -E 'error|slow consumer' "$WORK/monA-$N.log" "$WORK/monB-$N.log" "$WORK/nats-$N.log" 2>/dev/null | head -n 5 >&2 || true
  stop_pids
done

echo
echo "acs-monitor load — $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores, load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "acs-sim workers --count N --replicas $REPLICAS --services $SERVICES --interval 1s; warm-up ${WARMUP}s;"
echo "acs-sim query --rate $QUERY_RATE --duration $QUERY_DURATION (open loop; every 10th query a freshness probe)"
echo "acs-monitor --stream-max-age ${STREAM_MAX_AGE_S}s ${MONITOR_ARGS:-(default tiers)}"
echo
H='%-6s | %-3s | %-8s | %-9s | %-15s | %-13s | %-7s | %-7s | %-7s | %-7s | %-11s | %-9s | %-6s | %-6s | %-17s | %-6s\n'
# shellcheck disable=SC2059
printf "$H" N mon "sim msg/s" "behind ms" "JS pending(lag)" "age p50/max" "q p50" "q p99" "q max" "err/sent" "mon CPU%" "RSS MB" "nats%" "sim%" "queries answered" "replay"
# shellcheck disable=SC2059
printf "$H" ------ --- -------- --------- --------------- ------------- ------- ------- ------- ------- ----------- --------- ------ ------ ----------------- ------
for r in "${ROWS[@]}"; do
  IFS='|' read -r -a f <<<"$r"
  # shellcheck disable=SC2059
  printf "$H" "${f[@]}"
done
echo
echo "q p50/p99/max: stats query round trip in ms. age: ms from the start of the newest 1 s point the monitor answers"
echo "to now (an upper bound on ingestion lag; < 2000 with no lag). JS pending: most ACS_METRICS messages not yet"
echo "delivered to a monitor's consumer (sampled each second), and that in seconds of publishing."
echo "mon CPU%: of one core over the query run (ingestion + queries). RSS MB: VmRSS (1 monitor: VmRSS/VmHWM peak),"
echo "after warm-up + one or two query runs of history (see the RSS line below for its course)."
echo "replay: seconds for the second monitor to replay the stream and join the queue group."
echo "largest WorkerMetrics payload (bytes): ${ROWS_BYTES[*]:-}; ACS_METRICS messages at the end: ${ROWS_STREAM[*]:-}"
echo "monitor A RSS MB over the warm-up (seconds since the simulator started: MB):"
for l in "${RSS_LINES[@]:-}"; do echo "  $l"; done
