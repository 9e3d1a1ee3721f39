#!/usr/bin/env bash
# perf.sh — the targets P1–P7 of docs/PERFORMANCE.md in one run, one script after the other, on
# this machine:
#
#   P1, P2  bench/proxy-compare.sh   acs-proxy vs bare Pingora vs nginx vs HAProxy (wrk), and
#                                    the latency the proxy adds at half its peak, open loop
#   P1      bench/proxy-instructions.sh  instructions per request (callgrind), noise-free
#   P3      bench/proxy-bench.sh     backend event on NATS -> proxy routing by it
#   P4      bench/scale-in.sh        scale-in request -> replica drained, stopped, gone
#   P5      bench/spike.sh           load step -> first decision -> new replica serving
#   P6      bench/brain-scale.sh     the brain with 1,000 and 10,000 simulated workers
#   P7      bench/worker-idle.sh     an idle worker with 10 replicas
#   (and the monitor load test, bench/monitor-load.sh at 1,000 and 10,000 agents)
#
# The release binaries are built once first. Each script's table (its stdout) goes to
# OUT/<name>.txt and its log (stderr) to OUT/<name>.log; at the end every table is printed in
# order, with the command that made it and how long it took. A script that fails is reported
# and the run goes on with the next.
#
# Usage: bench/perf.sh                   (about 30 minutes on 2 cores)
#   ONLY="proxy-compare worker-idle"     run only these scripts
#   OUT=DIR                              where tables and logs go (default target/perf-<time>)
#
# Run it on an otherwise idle machine: every script shares its cores with what it measures.
set -euo pipefail

BENCH_TAG=perf
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
OUT=${OUT:-$ROOT/target/perf-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"

# name | measures | command (run from the repository root)
STEPS=(
  "proxy-compare|P1, P2|bench/proxy-compare.sh"
  "proxy-instructions|P1 profile|bench/proxy-instructions.sh"
  "proxy-bench|P3|bench/proxy-bench.sh"
  "scale-in|P4|bench/scale-in.sh"
  "spike|P5|bench/spike.sh"
  "brain-scale|P6|bench/brain-scale.sh"
  "worker-idle|P7|bench/worker-idle.sh"
  "monitor-load|monitor load|COUNTS='1000 10000' WARMUP=60 bench/monitor-load.sh"
)

log "building the release binaries once"
cargo build --release --workspace --bins >&2

declare -A RC SECS
ran=()
for step in "${STEPS[@]}"; do
  IFS='|' read -r name what cmd <<<"$step"
  if [[ -n "${ONLY:-}" && " $ONLY " != *" $name "* ]]; then continue; fi
  script=$(grep -o 'bench/[a-z-]*\.sh' <<<"$cmd" | head -n 1)
  if [[ ! -f "$script" ]]; then
    log "$name ($what): $script does not exist in this tree; skipped"
    continue
  fi
  log "$name ($what): $cmd"
  start=$SECONDS
  set +e
  bash -c "$cmd" >"$OUT/$name.txt" 2>"$OUT/$name.log"
  RC[$name]=$?
  set -e
  SECS[$name]=$((SECONDS - start))
  ran+=("$name|$what|$cmd")
  log "$name: exit ${RC[$name]} after ${SECS[$name]} s"
done

printf '# bench/perf.sh, %s, %s, %s cores\n\n' "$(date -u '+%Y-%m-%d %H:%M UTC')" "$(uname -n)" "$(nproc)"
for step in "${ran[@]}"; do
  IFS='|' read -r name what cmd <<<"$step"
  printf '## %s: %s (`%s`, %s s, exit %s)\n\n' "$what" "$name" "$cmd" "${SECS[$name]}" "${RC[$name]}"
  cat "$OUT/$name.txt"
  if [[ "${RC[$name]}" != 0 ]]; then
    printf '\nFAILED; the last lines of its log (%s):\n' "$OUT/$name.log"
    tail -n 15 "$OUT/$name.log"
  fi
  printf '\n'
done
log "tables and logs in $OUT"
