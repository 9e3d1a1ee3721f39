#!/usr/bin/env bash
# Chaos benchmark (issue 8, section 5): the compose cluster (compose.yaml: 3-node NATS, brains,
# proxy, workers w1..w3) under steady load through the proxy; each fault in turn, then healing;
# one table row per fault, PASS/FAIL against the issue's target (targets are never loosened).
#
# Usage: bench/chaos.sh [FAULT...]     (default: all, in the order below)
#   replica-kill     docker kill of one replica container      0 failed; serving again <= 2 s
#   worker-kill9     kill -9 of a worker process (restarts)    adopted, no duplicates, 0 failed
#   worker-lost      a worker container stopped for good       detect <= 3 s; serving <= 5 s;
#                                                              failed <= in flight to it
#   worker-cut       worker off acs-control 15 s, then back    replaced while cut off; surplus
#                                                              drained after; 0 failed
#   brain-kill9      leader brain kill -9 (two brains)         new leader <= 2 s; no dup; 0 failed
#   brain-pause      leader brain paused 10 s                  stale commands fenced; no dup
#   nats-restart     one NATS server restarted                 0 failed; all reconnect
#   docker-slow      a worker's Docker calls delayed           heartbeat flows; not declared dead
#   drain            acsctl drain of a worker under load       0 failed
# Faults that need something not built yet print "skipped: ..." (feature-detected: the brain's
# --lease-ms, `acsctl drain`).
#
# Environment: ACS_CHAOS_RPS (default 10), ACS_CHAOS_HEAL_TIMEOUT (s, default 30),
# ACS_CHAOS_URL (default http://127.0.0.1:8080/whoami), ACS_CHAOS_OUT (work dir, default a
# temp dir, kept). Exit status: 1 if any row FAILs (the table is always printed).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DEMO="$ROOT/scripts/compose-demo.sh"
# Low enough that the load alone does not scale `web` out (the replica count before a fault is
# the one expected after healing).
RPS=${ACS_CHAOS_RPS:-10}
HEAL=${ACS_CHAOS_HEAL_TIMEOUT:-30}
URL=${ACS_CHAOS_URL:-http://127.0.0.1:8080/whoami}
OUT=${ACS_CHAOS_OUT:-$(mktemp -d "${TMPDIR:-/tmp}/acs-chaos.XXXXXX")}
PROJECT=${COMPOSE_PROJECT_NAME:-acs}
mkdir -p "$OUT"
ALL=(replica-kill worker-kill9 worker-lost worker-cut brain-kill9 brain-pause nats-restart docker-slow drain)
FAULTS=("$@")
[ "${#FAULTS[@]}" -gt 0 ] || FAULTS=("${ALL[@]}")

say() { printf 'chaos: %s\n' "$*" >&2; }
now() { date +%s.%N | cut -c1-14; }
ctr() { echo "${PROJECT}_$1_1"; }
acsctl() { timeout 10 "$DEMO" acsctl "$@"; }

ROWS=()
FAILED=0
row() { ROWS+=("$(printf '%s|%s|%s|%s|%s|%s|%s' "$@")"); [ "$6" != FAIL ] || FAILED=1; }

# --- cleanup, whatever happens ------------------------------------------------------------------
CLEANUP=()
cleanup() {
  local c
  for c in "${CLEANUP[@]}"; do eval "$c" >/dev/null 2>&1 || true; done
  CLEANUP=()
  [ -z "${WATCH_PID:-}" ] || kill "$WATCH_PID" 2>/dev/null || true
}
print_table() {
  echo
  printf '%-13s | %-8s | %-9s | %-14s | %-18s | %-4s | %s\n' fault detect serving 'failed/total' 'left over/missing' res target
  printf '%s\n' "--------------+----------+-----------+----------------+--------------------+------+-------"
  local r
  for r in "${ROWS[@]}"; do
    IFS='|' read -r f d s ft lm res tgt <<<"$r"
    printf '%-13s | %-8s | %-9s | %-14s | %-18s | %-4s | %s\n' "$f" "$d" "$s" "$ft" "$lm" "$res" "$tgt"
  done
  echo "(work dir: $OUT)"
}
trap 'cleanup; print_table; exit $FAILED' EXIT
trap 'exit 1' INT TERM

# --- the cluster ------------------------------------------------------------------------------
if [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$URL")" != 200 ]; then
  say "cluster not serving $URL: scripts/compose-demo.sh up"
  "$DEMO" up >&2 || { say "compose-demo up failed"; exit 1; }
fi
LEASE=0
docker run --rm acs/vim-brain:dev --help 2>/dev/null | grep -q -- '--lease-ms' && LEASE=1
DRAIN=0
acsctl drain --help >/dev/null 2>&1 && DRAIN=1

# The event stream, each line prefixed with the time it arrived (seconds, 3 decimals).
EVENTS="$OUT/events.log"
( "$DEMO" acsctl watch --json 2>>"$OUT/watch.err" \
  | python3 -u -c 'import sys,time
for l in sys.stdin: print("%.3f %s" % (time.time(), l), end="", flush=True)' >"$EVENTS" ) &
WATCH_PID=$!

# Replica containers of this cluster, running, per worker: "w1 name" lines.
replica_ctrs() {
  docker ps --filter network=acs-data --filter label=acs.service=web \
    --format '{{.Label "acs.worker"}} {{.Names}}' | grep -E '^w[0-9]+ ' || true
}
count_ctrs() { replica_ctrs | wc -l; }

# Steady load for $1 seconds in the background; its report goes to $OUT/load-$2.log.
start_load() {
  "$DEMO" load "$URL" --rps "$RPS" --duration "${1}s" --request-timeout 5s >"$OUT/load-$2.log" 2>&1 &
  LOAD_PID=$!
}
# "failed total" from the load's final `total ...` line.
load_result() {
  python3 - "$OUT/load-$1.log" <<'EOF'
import re, sys
t = [l for l in open(sys.argv[1]) if l.lstrip().startswith("total")]
if not t: print("? ?"); sys.exit()
l = t[-1]
g = lambda k: int((re.search(r"\b%s (\d+)" % k, l) or [0, 0])[1])
ok, failed, skipped = g("ok"), g("failed"), g("skipped")
print(failed + skipped, ok + failed + skipped)
EOF
}
# Seconds from T0 to the first event after T0 matching the regex $2 (or "-").
detect_after() {
  awk -v t0="$1" -v re="$2" '$1 >= t0 && $0 ~ re { printf "%.2f", $1 - t0; found = 1; exit } END { if (!found) print "-" }' "$EVENTS"
}
# Waits (<= $HEAL s) until the container count is back at $1 and /whoami answers; prints seconds
# since T0 ($2) or "-".
wait_serving() {
  local want=$1 t0=$2 deadline=$((SECONDS + HEAL))
  while [ "$SECONDS" -lt "$deadline" ]; do
    if [ "$(count_ctrs)" -ge "$want" ] \
      && [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$URL")" = 200 ]; then
      python3 -c "import time; print('%.2f' % (time.time() - $t0))"; return
    fi
    sleep 0.2
  done
  echo -
}
# Waits for the count to settle at $1 (<= $HEAL s); prints "+N" / "-N" / "0".
settle() {
  local want=$1 n deadline=$((SECONDS + HEAL))
  while [ "$SECONDS" -lt "$deadline" ]; do
    n=$(count_ctrs); [ "$n" -eq "$want" ] && { echo 0; return; }
    sleep 0.5
  done
  n=$(count_ctrs); [ "$n" -gt "$want" ] && echo "+$((n - want))" || echo "-$((want - n))"
}
le() { python3 -c "import sys; sys.exit(0 if '$1' != '-' and float('$1') <= float('$2') else 1)"; }
ok_if() { if "$@"; then echo PASS; else echo FAIL; fi; }

# A worker with at least one replica (prints its id).
busy_worker() { replica_ctrs | awk '{ print $1 }' | sort | uniq -c | sort -rn | awk 'NR==1 { print $2 }'; }
wsvc() { echo "worker${1#w}"; }

# --- the faults ---------------------------------------------------------------------------------
fault_replica_kill() {
  local base name t0 det srv res ft lm
  base=$(count_ctrs); name=$(replica_ctrs | awk 'NR==1 { print $2 }')
  [ -n "$name" ] || { row replica-kill - - - - FAIL "no replica to kill"; return; }
  start_load 20 replica-kill; sleep 3
  t0=$(now); docker kill "$name" >/dev/null
  det=$(sleep 3; detect_after "$t0" "${name#acs-*-*-}|replica|Replace|Place")
  srv=$(wait_serving "$base" "$t0")
  wait "$LOAD_PID"; read -r f tot < <(load_result replica-kill); lm=$(settle "$base")
  res=$(ok_if eval '[ "$f" = 0 ] && le "$srv" 2 && [ "$lm" = 0 ]')
  row replica-kill "$det" "$srv" "$f/$tot" "$lm" "$res" "0 failed; serving <= 2 s"
}

fault_worker_kill9() {
  local base w t0 srv lm
  base=$(count_ctrs); w=$(busy_worker)
  start_load 25 worker-kill9; sleep 3
  t0=$(now)
  # kill -9 of the worker's process from the host (not `docker kill`, which counts as a manual
  # stop): the container dies with it and Docker restarts it (unless-stopped).
  kill -9 "$(docker inspect -f '{{.State.Pid}}' "$(ctr "$(wsvc "$w")")")"
  srv=$(wait_serving "$base" "$t0"); sleep 5
  wait "$LOAD_PID"; read -r f tot < <(load_result worker-kill9); lm=$(settle "$base")
  res=$(ok_if eval '[ "$f" = 0 ] && [ "$lm" = 0 ]')
  row worker-kill9 "$(detect_after "$t0" "$w")" "$srv" "$f/$tot" "$lm" "$res" "adopted, no duplicates, 0 failed"
}

fault_worker_lost() {
  local base w t0 det srv lm inflight
  base=$(count_ctrs); w=$(busy_worker)
  start_load 25 worker-lost; sleep 3
  inflight=$(replica_ctrs | awk -v w="$w" '$1 == w' | wc -l)
  t0=$(now); docker stop -t 0 "$(ctr "$(wsvc "$w")")" >/dev/null
  CLEANUP+=("docker start $(ctr "$(wsvc "$w")")")
  # Its replicas keep running without a worker (the host is "lost"): remove them too.
  replica_ctrs | awk -v w="$w" '$1 == w { print $2 }' | xargs -r docker rm -f >/dev/null
  srv=$(wait_serving "$base" "$t0"); det=$(detect_after "$t0" "$w.*([Dd]own|[Ll]ost|dead)")
  wait "$LOAD_PID"; read -r f tot < <(load_result worker-lost); lm=$(settle "$base")
  # In flight to it: at most the load's concurrency share; bound by RPS x request time (<< 1 s).
  res=$(ok_if eval 'le "$det" 3 && le "$srv" 5 && [ "$f" != "?" ] && [ "$f" -le "$((RPS / 2))" ] && [ "$lm" = 0 ]')
  row worker-lost "$det" "$srv" "$f/$tot" "$lm" "$res" "detect <= 3 s; serving <= 5 s; failed <= in flight"
  docker start "$(ctr "$(wsvc "$w")")" >/dev/null; settle "$base" >/dev/null
}

fault_worker_cut() {
  local base w t0 det srv lm c
  base=$(count_ctrs); w=$(busy_worker); c=$(ctr "$(wsvc "$w")")
  start_load 45 worker-cut; sleep 3
  t0=$(now); docker network disconnect acs-control "$c"
  CLEANUP+=("docker network connect acs-control $c")
  det=; srv=$(wait_serving "$((base + $(replica_ctrs | awk -v w="$w" '$1 == w' | wc -l)))" "$t0")
  sleep $((15 - ${srv%.*} > 0 ? 15 - ${srv%.*} : 0)) 2>/dev/null || sleep 5
  docker network connect acs-control "$c"
  det=$(detect_after "$t0" "$w.*([Dd]own|[Ll]ost)")
  wait "$LOAD_PID"; read -r f tot < <(load_result worker-cut); lm=$(settle "$base")
  res=$(ok_if eval '[ "$srv" != - ] && [ "$f" = 0 ] && [ "$lm" = 0 ]')
  row worker-cut "$det" "$srv" "$f/$tot" "$lm" "$res" "replaced while cut; surplus drained; 0 failed"
}

fault_brain() {
  local kind=$1
  [ "$LEASE" -eq 1 ] || { row "brain-$kind" - - - - skip "skipped: no lease yet (vim-brain has no --lease-ms)"; return; }
  local base t0 leader srv lm
  base=$(count_ctrs)
  leader=$(acsctl status --json 2>/dev/null | python3 -c 'import json,sys; print((json.load(sys.stdin).get("brain") or {}).get("id",""))' 2>/dev/null)
  local svc=brain-1; [[ "$leader" == *2* ]] && svc=brain-2
  start_load 25 "brain-$kind"; sleep 3
  t0=$(now)
  if [ "$kind" = kill9 ]; then
    kill -9 "$(docker inspect -f '{{.State.Pid}}' "$(ctr $svc)")"
  else
    docker pause "$(ctr $svc)" >/dev/null; CLEANUP+=("docker unpause $(ctr $svc)")
    sleep 10; docker unpause "$(ctr $svc)" >/dev/null
  fi
  det=$(sleep 3; detect_after "$t0" 'leader')
  wait "$LOAD_PID"; read -r f tot < <(load_result "brain-$kind"); lm=$(settle "$base")
  if [ "$kind" = kill9 ]; then
    res=$(ok_if eval 'le "$det" 2 && [ "$f" = 0 ] && [ "$lm" = 0 ]')
    row brain-kill9 "$det" - "$f/$tot" "$lm" "$res" "new leader <= 2 s; no dup; 0 failed"
  else
    local fenced; fenced=$(awk -v t0="$t0" '$1 >= t0 && /fenced/' "$EVENTS" | wc -l)
    res=$(ok_if eval '[ "$lm" = 0 ]')
    row brain-pause "$det" - "$f/$tot" "$lm (fenced $fenced)" "$res" "stale commands fenced; no dup"
  fi
  docker start "$(ctr $svc)" >/dev/null 2>&1 || true
}

fault_nats_restart() {
  local base t0 srv lm
  base=$(count_ctrs)
  start_load 25 nats-restart; sleep 3
  t0=$(now); docker restart -t 2 "$(ctr nats-2)" >/dev/null
  srv=$(python3 -c "import time; print('%.2f' % (time.time() - $t0))")
  wait "$LOAD_PID"; read -r f tot < <(load_result nats-restart); lm=$(settle "$base")
  local conn; conn=$("$DEMO" check >/dev/null 2>&1 && echo yes || echo no)
  res=$(ok_if eval '[ "$f" = 0 ] && [ "$lm" = 0 ] && [ "$conn" = yes ]')
  row nats-restart - "$srv" "$f/$tot" "$lm (reconnected $conn)" "$res" "0 failed; all reconnect"
}

fault_docker_slow() {
  row docker-slow - - - - skip "skipped: not in this script yet (socket-delay proxy)"
}

fault_drain() {
  [ "$DRAIN" -eq 1 ] || { row drain - - - - skip "skipped: acsctl has no drain yet"; return; }
  local base w t0 srv lm
  base=$(count_ctrs); w=$(busy_worker)
  start_load 30 drain; sleep 3
  t0=$(now); acsctl drain "$w" >/dev/null 2>&1
  CLEANUP+=("$DEMO acsctl uncordon $w")
  srv=$(wait_serving "$base" "$t0")
  wait "$LOAD_PID"; read -r f tot < <(load_result drain); lm=$(settle "$base")
  res=$(ok_if eval '[ "$f" = 0 ] && [ "$lm" = 0 ]')
  row drain "$(detect_after "$t0" "$w")" "$srv" "$f/$tot" "$lm" "$res" "0 failed"
  acsctl uncordon "$w" >/dev/null 2>&1 || true
}

for f in "${FAULTS[@]}"; do
  say "fault $f"
  case "$f" in
    replica-kill) fault_replica_kill ;;
    worker-kill9) fault_worker_kill9 ;;
    worker-lost) fault_worker_lost ;;
    worker-cut) fault_worker_cut ;;
    brain-kill9) fault_brain kill9 ;;
    brain-pause) fault_brain pause ;;
    nats-restart) fault_nats_restart ;;
    docker-slow) fault_docker_slow ;;
    drain) fault_drain ;;
    *) say "unknown fault $f (one of: ${ALL[*]})"; FAILED=1 ;;
  esac
  cleanup_one=("${CLEANUP[@]}"); for c in "${cleanup_one[@]}"; do eval "$c" >/dev/null 2>&1 || true; done; CLEANUP=()
done
