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
# --lease, `acsctl drain`). Healing is judged against the leader's desired count for `web`
# (`acsctl status --json`), not the container count before the fault: "left over/missing" is
# running replica containers minus desired once settled (+N = duplicates or surplus).
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
  [ -z "${WATCH_PID:-}" ] || kill -- "-$WATCH_PID" 2>/dev/null || kill "$WATCH_PID" 2>/dev/null || true
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
docker run --rm acs/vim-brain:dev --help 2>/dev/null | grep -- '--lease <' >/dev/null && LEASE=1
DRAIN=0
acsctl drain --help >/dev/null 2>&1 && DRAIN=1

# The event stream, each line prefixed with the time it arrived (seconds, 3 decimals).
EVENTS="$OUT/events.log"
# In its own process group (setsid), so that cleanup ends all of it (acsctl and the stamper).
EVENTS="$OUT/events.log" setsid bash -c '"$0" acsctl watch --json 2>>"${EVENTS%/*}/watch.err" \
  | python3 -u -c "import sys,time
for l in sys.stdin: print(\"%.3f %s\" % (time.time(), l), end=\"\", flush=True)" >"$EVENTS" 2>&1' "$DEMO" \
  </dev/null 2>>"$OUT/watch.err" &
WATCH_PID=$!

# Replica containers of this cluster, running, per worker: "w1 name" lines.
replica_ctrs() {
  docker ps --filter network=acs-data --filter label=acs.service=web \
    --format '{{.Label "acs.worker"}} {{.Names}}' | grep -E '^w[0-9]+ ' || true
}
count_ctrs() { replica_ctrs | wc -l; }
# `acsctl status --json` field of the leader's reply, by a python expression over `j` ("" if no
# leader answers).
# $ACS_TIMEOUT: a paused leader still holds its subscription, so a request waits the whole
# timeout for nothing; short enough to measure a takeover to within about a second.
status_get() {
  ACS_TIMEOUT=${STATUS_TIMEOUT:-1s} acsctl status --json 2>/dev/null | python3 -c "import json,sys
try: j=json.load(sys.stdin)
except Exception: sys.exit()
web=[x for x in j.get('services',[]) if x.get('name')=='web']
web=web[0] if web else {}
brain=j.get('brain') or {}
print($1)" 2>/dev/null
}
desired() { status_get "web.get('desired','')"; }
leader_instance() { status_get "brain.get('instance','') if brain.get('leader') else ''"; }
# Seconds since T0 ($2) until a leader other than $1 answers `acs.status` (<= $HEAL s), or "-".
wait_new_leader() {
  local old=$1 t0=$2 l deadline=$((SECONDS + HEAL))
  while [ "$SECONDS" -lt "$deadline" ]; do
    l=$(leader_instance)
    if [ -n "$l" ] && [ "$l" != "$old" ]; then
      python3 -c "import time; print('%.2f' % (time.time() - $t0))"; return
    fi
    sleep 0.1
  done
  echo -
}

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
# Waits (<= $HEAL s) until the container count is back at $1 (a number, or `desired`: the
# leader's desired count) and /whoami answers; prints seconds since T0 ($2) or "-".
wait_serving() {
  local want t0=$2 deadline=$((SECONDS + HEAL))
  while [ "$SECONDS" -lt "$deadline" ]; do
    want=$1; [ "$want" != desired ] || want=$(desired)
    if [ -n "$want" ] && [ "$(count_ctrs)" -ge "$want" ] \
      && [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$URL")" = 200 ]; then
      python3 -c "import time; print('%.2f' % (time.time() - $t0))"; return
    fi
    sleep 0.2
  done
  echo -
}
# Waits (<= $HEAL s) for the running replica containers to settle at the leader's desired count
# (read afresh each time); prints "+N" / "-N" / "0" (running minus desired), or "?" when no
# leader answers.
settle() {
  local want n deadline=$((SECONDS + HEAL))
  while [ "$SECONDS" -lt "$deadline" ]; do
    want=$(desired); n=$(count_ctrs)
    [ -n "$want" ] && [ "$n" -eq "$want" ] && { echo 0; return; }
    sleep 0.5
  done
  want=$(desired); n=$(count_ctrs)
  [ -n "$want" ] || { echo "?"; return; }
  [ "$n" -gt "$want" ] && echo "+$((n - want))" || echo "-$((want - n))"
}
# The brain's WorkerEvent declaring worker $1 down (acs.events.worker.<w>, docs/EVENTS.md).
down_re() { echo "\"health\":\"(down|lost|dead)\".*\"subject\":\"acs.events.worker.$1\""; }
le() { python3 -c "import sys; sys.exit(0 if '$1' != '-' and float('$1') <= float('$2') else 1)"; }
ok_if() { if "$@"; then echo PASS; else echo FAIL; fi; }

# A worker with at least one replica (prints its id).
busy_worker() { replica_ctrs | awk '{ print $1 }' | sort | uniq -c | sort -rn | awk 'NR==1 { print $2 }'; }
wsvc() { echo "worker${1#w}"; }

# --- the faults ---------------------------------------------------------------------------------
fault_replica_kill() {
  local name t0 det srv f tot lm res
  name=$(replica_ctrs | awk 'NR==1 { print $2 }')
  [ -n "$name" ] || { row replica-kill - - - - FAIL "no replica to kill"; return; }
  start_load 20 replica-kill; sleep 3
  t0=$(now); docker kill "$name" >/dev/null
  # serving first: measuring it only after a wait for the detect event added that wait to it.
  srv=$(wait_serving desired "$t0")
  det=$(sleep 1; detect_after "$t0" "${name#acs-*-*-}|replica|Replace|Place")
  wait "$LOAD_PID"; read -r f tot < <(load_result replica-kill); lm=$(settle)
  res=$(ok_if eval '[ "$f" = 0 ] && le "$srv" 2 && [ "$lm" = 0 ]')
  row replica-kill "$det" "$srv" "$f/$tot" "$lm" "$res" "0 failed; serving <= 2 s"
}

fault_worker_kill9() {
  local w t0 srv f tot lm res
  w=$(busy_worker)
  start_load 25 worker-kill9; sleep 3
  t0=$(now)
  # kill -9 of the worker's process from the host (not `docker kill`, which counts as a manual
  # stop): the container dies with it and Docker restarts it (unless-stopped).
  kill -9 "$(docker inspect -f '{{.State.Pid}}' "$(ctr "$(wsvc "$w")")")"
  srv=$(wait_serving desired "$t0"); sleep 5
  wait "$LOAD_PID"; read -r f tot < <(load_result worker-kill9); lm=$(settle)
  res=$(ok_if eval '[ "$f" = 0 ] && [ "$lm" = 0 ]')
  row worker-kill9 "$(detect_after "$t0" "$w")" "$srv" "$f/$tot" "$lm" "$res" "adopted, no duplicates, 0 failed"
}

fault_worker_lost() {
  local w t0 det srv f tot lm res
  w=$(busy_worker)
  start_load 25 worker-lost; sleep 3
  t0=$(now); docker stop -t 0 "$(ctr "$(wsvc "$w")")" >/dev/null
  CLEANUP+=("docker start $(ctr "$(wsvc "$w")")")
  # Its replicas keep running without a worker (the host is "lost"): remove them too.
  replica_ctrs | awk -v w="$w" '$1 == w { print $2 }' | xargs -r docker rm -f >/dev/null
  srv=$(wait_serving desired "$t0"); det=$(detect_after "$t0" "$(down_re "$w")")
  wait "$LOAD_PID"; read -r f tot < <(load_result worker-lost); lm=$(settle)
  # In flight to it: at most the load's concurrency share; bound by RPS x request time (<< 1 s).
  res=$(ok_if eval 'le "$det" 3 && le "$srv" 5 && [ "$f" != "?" ] && [ "$f" -le "$((RPS / 2))" ] && [ "$lm" = 0 ]')
  row worker-lost "$det" "$srv" "$f/$tot" "$lm" "$res" "detect <= 3 s; serving <= 5 s; failed <= in flight"
  docker start "$(ctr "$(wsvc "$w")")" >/dev/null; settle >/dev/null
}

fault_worker_cut() {
  local want w t0 det srv f tot lm c n res
  want=$(desired); w=$(busy_worker); c=$(ctr "$(wsvc "$w")")
  n=$(replica_ctrs | awk -v w="$w" '$1 == w' | wc -l)
  start_load 45 worker-cut; sleep 3
  t0=$(now); docker network disconnect acs-control "$c"
  CLEANUP+=("docker network connect acs-control $c")
  # Its replicas keep serving (acs-data is untouched); the brain places replacements elsewhere.
  srv=$(wait_serving "$((${want:-0} + n))" "$t0")
  sleep $((15 - ${srv%.*} > 0 ? 15 - ${srv%.*} : 0)) 2>/dev/null || sleep 5
  docker network connect acs-control "$c"
  det=$(detect_after "$t0" "$(down_re "$w")")
  wait "$LOAD_PID"; read -r f tot < <(load_result worker-cut); lm=$(settle)
  res=$(ok_if eval '[ "$srv" != - ] && [ "$f" = 0 ] && [ "$lm" = 0 ]')
  row worker-cut "$det" "$srv" "$f/$tot" "$lm" "$res" "replaced while cut; surplus drained; 0 failed"
}

# The leader brain (from `acs.status`: only the leader answers) killed -9 or paused 10 s.
# detect: its successor's `elected` LeaderEvent; serving: the successor answers `acs.status`.
fault_brain() {
  local kind=$1
  [ "$LEASE" -eq 1 ] || { row "brain-$kind" - - - - skip "skipped: no lease yet (vim-brain has no --lease)"; return; }
  local old new t0 det act f tot lm res c fenced down
  old=$(leader_instance)
  case "$old" in brain-1) new=brain-2 ;; brain-2) new=brain-1 ;;
    *) row "brain-$kind" - - - - FAIL "no leader brain answers acs.status (got '$old')"; return ;; esac
  c=$(ctr "$old")
  start_load 25 "brain-$kind"; sleep 3
  t0=$(now)
  if [ "$kind" = kill9 ]; then
    kill -9 "$(docker inspect -f '{{.State.Pid}}' "$c")"
    act=$(wait_new_leader "$old" "$t0")
  else
    docker pause "$c" >/dev/null; CLEANUP+=("docker unpause $c")
    act=$(wait_new_leader "$old" "$t0")
    python3 -c "import time; time.sleep(max(0, $t0 + 10 - time.time()))"
    docker unpause "$c" >/dev/null
  fi
  wait "$LOAD_PID"; read -r f tot < <(load_result "brain-$kind"); lm=$(settle)
  det=$(detect_after "$t0" "\"brain\":\"$new\",\"change\":\"elected\"")
  if [ "$kind" = kill9 ]; then
    res=$(ok_if eval 'le "$det" 2 && [ "$f" = 0 ] && [ "$lm" = 0 ]')
    row brain-kill9 "$det" "$act" "$f/$tot" "$lm" "$res" "new leader <= 2 s; no dup; 0 failed"
  else
    fenced=$(awk -v t0="$t0" '$1 >= t0 && /"kind":"fenced"/' "$EVENTS" | wc -l)
    down=$(docker logs --since "${t0%.*}" "$c" 2>&1 | grep -c "stepped down")
    res=$(ok_if eval '[ "$det" != - ] && [ "$down" -ge 1 ] && [ "$lm" = 0 ]')
    row brain-pause "$det" "$act" "$f/$tot" "$lm (fenced $fenced, stepped down $down)" "$res" "stale commands fenced; old leader steps down; no dup"
  fi
  docker start "$c" >/dev/null 2>&1 || true
}

fault_nats_restart() {
  local t0 srv f tot lm conn res
  start_load 25 nats-restart; sleep 3
  t0=$(now); docker restart -t 2 "$(ctr nats-2)" >/dev/null
  srv=$(python3 -c "import time; print('%.2f' % (time.time() - $t0))")
  wait "$LOAD_PID"; read -r f tot < <(load_result nats-restart); lm=$(settle)
  conn=$("$DEMO" check >/dev/null 2>&1 && echo yes || echo no)
  res=$(ok_if eval '[ "$f" = 0 ] && [ "$lm" = 0 ] && [ "$conn" = yes ]')
  row nats-restart - "$srv" "$f/$tot" "$lm (reconnected $conn)" "$res" "0 failed; all reconnect"
}

# worker3 is recreated behind bench/chaos/docker-slow.py (its Docker socket through a proxy,
# bench/chaos/docker-slow.compose.yaml), then every Docker call of it is delayed by
# ACS_CHAOS_DOCKER_DELAY s (default 2) for 20 s under load. detect: the first "down"/"lost" event
# for w3 (should be "-"). Afterwards worker3 is recreated on the plain socket.
fault_docker_slow() {
  local dir t0 f tot lm res det pid delay=${ACS_CHAOS_DOCKER_DELAY:-2} compose=(docker-compose)
  docker-compose version >/dev/null 2>&1 || compose=(docker compose)
  dir="$OUT/docker-slow"; mkdir -p "$dir"; echo 0 >"$dir/docker.sock.delay"
  python3 "$ROOT/bench/chaos/docker-slow.py" "$dir/docker.sock" /var/run/docker.sock "$dir/docker.sock.delay" \
    2>"$dir/proxy.log" &
  pid=$!
  CLEANUP+=("kill $pid")
  local up=("${compose[@]}" -p "$PROJECT" -f compose.yaml)
  CLEANUP+=("${up[*]} up -d --no-deps worker3")
  ACS_SLOW_DIR=$dir "${up[@]}" -f bench/chaos/docker-slow.compose.yaml up -d --no-deps worker3 >"$dir/up.log" 2>&1 \
    || { row docker-slow - - - - FAIL "could not recreate worker3 behind the proxy ($dir/up.log)"; return; }
  settle >/dev/null
  start_load 25 docker-slow; sleep 3
  t0=$(now); echo "$delay" >"$dir/docker.sock.delay"
  sleep 20; echo 0 >"$dir/docker.sock.delay"
  wait "$LOAD_PID"; read -r f tot < <(load_result docker-slow); lm=$(settle)
  det=$(detect_after "$t0" "$(down_re w3)")
  local beats; beats=$(awk -v t0="$t0" -v t1="$(python3 -c "print($t0 + 20)")" \
    '$1 >= t0 && $1 <= t1 && /"subject":"acs.metrics.worker.w3"/' "$EVENTS" | wc -l)
  res=$(ok_if eval '[ "$det" = - ] && [ "$beats" -ge 15 ] && [ "$f" = 0 ] && [ "$lm" = 0 ]')
  row docker-slow "$det" - "$f/$tot" "$lm (w3 beats $beats/20 s)" "$res" "heartbeat flows; not declared dead"
  kill "$pid" 2>/dev/null; "${up[@]}" up -d --no-deps worker3 >>"$dir/up.log" 2>&1; settle >/dev/null
}

fault_drain() {
  [ "$DRAIN" -eq 1 ] || { row drain - - - - skip "skipped: acsctl has no drain yet"; return; }
  local w t0 srv f tot lm res
  w=$(busy_worker)
  start_load 30 drain; sleep 3
  t0=$(now); acsctl drain "$w" >/dev/null 2>&1
  CLEANUP+=("$DEMO acsctl uncordon $w")
  srv=$(wait_serving desired "$t0")
  wait "$LOAD_PID"; read -r f tot < <(load_result drain); lm=$(settle)
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
