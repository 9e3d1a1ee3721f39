#!/usr/bin/env bash
# worker-idle.sh — what an idle vmm-worker with 10 replicas costs (target P7 of
# docs/PERFORMANCE.md: < 1 % of a core, RSS <= 15 MB).
#
# For each runtime (process, and docker when the engine answers): a real nats-server (-js), a
# release vim-brain whose services file pins one service at REPLICAS x (number of workers)
# replicas (min = max, so nothing scales), and release vmm-workers with --max-replicas REPLICAS,
# so each worker runs exactly REPLICAS replicas of demo-web (process runtime: the release
# binary; docker: the local scratch image acs/demo-web:dev from scripts/build-images.sh). Once
# all replicas are healthy and SETTLE has passed, every worker is measured over the same MEASURE
# window: CPU % of one core (utime + stime from /proc/<pid>/stat), VmRSS and VmHWM, threads.
# Prints one table.
#
# Several worker binaries side by side, measured in the same window (an A/B on equal terms):
#   WORKER_BINS="before:/tmp/vmm-worker.before after:target/release/vmm-worker" bench/worker-idle.sh
#
# Usage: bench/worker-idle.sh
#   RUNTIMES="process docker" REPLICAS=10 MEASURE=60 SETTLE=10 INTERVAL_MS=1000
#   PROFILE=1   also `perf record -e cpu-clock -g` each worker over the window; the top of
#               `perf report` goes to $OUT/perf-<runtime>-<label>.txt
#   OUT=DIR     keep logs and profiles there (default: a temporary directory, removed)
#   NO_BUILD=1  use the release binaries already in target/release
# Needs: cargo, nats-server, curl, python3; docker for the docker row; perf for PROFILE=1.
set -euo pipefail

RUNTIMES=${RUNTIMES:-process docker}
REPLICAS=${REPLICAS:-10}
MEASURE=${MEASURE:-60}
SETTLE=${SETTLE:-10}
INTERVAL_MS=${INTERVAL_MS:-1000}
PROFILE=${PROFILE:-0}
IMAGE=${IMAGE:-acs/demo-web:dev}

BENCH_TAG=worker-idle
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
WORKER_BINS=${WORKER_BINS:-current:$REL/vmm-worker}
KEEP_OUT=${OUT:+1}
OUT=${OUT:-$(mktemp -d -t acs-worker-idle.XXXXXX)}
mkdir -p "$OUT"

# Containers are named acs-<worker>-<replica>; our worker ids start with i<TAG>-.
remove_containers() {
  if [[ -n "${TAG:-}" ]] && command -v docker >/dev/null 2>&1; then
    docker ps -aq --filter "name=acs-i$TAG-" 2>/dev/null | xargs -r docker rm -f >/dev/null 2>&1 || true
  fi
}
cleanup() {
  stop_pids
  remove_containers
  [[ -n "$KEEP_OUT" ]] || rm -rf "$OUT"
}
trap cleanup EXIT INT TERM

command -v python3 >/dev/null || die "python3 is needed"
[[ -x "$(bin nats-server)" ]] || die "nats-server is needed (scripts/install-deps.sh)"
if [[ $PROFILE == 1 ]]; then command -v perf >/dev/null || die "PROFILE=1 needs perf (linux-perf)"; fi

if [[ ${NO_BUILD:-0} != 1 ]]; then
  log "building release binaries"
  cargo build --release -q -p vmm-worker --bin vmm-worker -p vim-brain --bin vim-brain \
    -p demo-web --bin demo-web -p acsctl --bin acsctl
fi

read -r -a BINS <<<"$WORKER_BINS"
for b in "${BINS[@]}"; do [[ -x "${b#*:}" ]] || die "worker binary ${b#*:} ($b) not found"; done
NWORKERS=${#BINS[@]}
TOTAL=$(( REPLICAS * NWORKERS ))

status_kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

services_file() { # runtime -> path
  local f="$OUT/services-$1.toml"
  {
    echo '[[service]]'
    echo 'name = "idle"'
    if [[ $1 == process ]]; then
      echo "command = [\"$REL/demo-web\", \"--port\", \"{port}\", \"--id\", \"{replica}\", \"--bind\", \"127.0.0.1\", \"--work-ms\", \"0\"]"
    else
      echo "image = \"$IMAGE\""
      echo 'port = 8000'
      echo 'env = { WORK_MS = "0" }'
    fi
    echo 'health_path = "/healthz"'
    echo 'route = { path_prefix = "/" }'
    echo '[service.policy]'
    echo "min_replicas = $TOTAL"
    echo "max_replicas = $TOTAL"
  } >"$f"
  echo "$f"
}

running_count() { # nats-url -> healthy replicas of `idle` as the brain sees them
  ACS_NATS_INSECURE=1 "$REL/acsctl" --nats "$1" --prefix "$PREFIX" --timeout 2s status --json 2>/dev/null \
    | python3 -c 'import json,sys
try:
    j = json.load(sys.stdin)
    print(sum(s["running"] for s in j["services"] if s["name"] == "idle"))
except Exception:
    print(0)' 2>/dev/null || true
}

ROWS=()
run_runtime() { # runtime
  local rt=$1
  TAG=$RANDOM
  PREFIX="idle$TAG"
  local nats_port; nats_port=$(free_port)
  local url="nats://127.0.0.1:$nats_port"
  "$(bin nats-server)" -a 127.0.0.1 -p "$nats_port" -js -sd "$OUT/js-$rt" >"$OUT/nats-$rt.log" 2>&1 &
  PIDS+=($!)
  wait_port "$nats_port" nats-server
  export ACS_NATS_INSECURE=1
  RUST_LOG=warn "$REL/vim-brain" --services "$(services_file "$rt")" --nats "$url" --prefix "$PREFIX" \
    >"$OUT/brain-$rt.log" 2>&1 &
  PIDS+=($!)

  local labels=() wpids=() b label path i=0
  for b in "${BINS[@]}"; do
    label=${b%%:*}; path=${b#*:}; i=$((i + 1))
    local args=(--id "i$TAG-$i-$label" --max-replicas "$REPLICAS" --nats "$url" --nats-insecure
      --prefix "$PREFIX" --interval "${INTERVAL_MS}ms" --advertise-host 127.0.0.1
      --state-dir "$OUT/state-$rt-$label")
    if [[ $rt == process ]]; then
      args+=(--runtime process --allow-command "$REL/demo-web")
    else
      args+=(--runtime docker --allow-image "$IMAGE")
    fi
    RUST_LOG=warn "$path" "${args[@]}" >"$OUT/worker-$rt-$label.log" 2>&1 &
    PIDS+=($!); wpids+=($!); labels+=("$label")
  done

  log "$rt: waiting for $TOTAL healthy replicas on $NWORKERS worker(s)"
  local deadline=$((SECONDS + 180)) n=0
  while (( SECONDS < deadline )); do
    n=$(running_count "$url" | tail -n1); n=${n:-0}
    (( n >= TOTAL )) && break
    sleep 1
  done
  (( n >= TOTAL )) || { tail -n 20 "$OUT"/worker-"$rt"-*.log "$OUT/brain-$rt.log" >&2; die "$rt: only $n of $TOTAL replicas healthy"; }
  log "$rt: $n healthy; settling ${SETTLE}s, then measuring ${MEASURE}s"
  sleep "$SETTLE"

  local perf_pids=() t0=() k
  if [[ $PROFILE == 1 ]]; then
    for k in "${!wpids[@]}"; do
      perf record -q -e cpu-clock -F 999 -g -p "${wpids[$k]}" -o "$OUT/perf-$rt-${labels[$k]}.data" \
        -- sleep "$MEASURE" >/dev/null 2>&1 &
      perf_pids+=($!)
    done
  fi
  for k in "${!wpids[@]}"; do t0[$k]=$(cpu_ticks "${wpids[$k]}"); done
  local start=$SECONDS
  sleep "$MEASURE"
  local secs=$((SECONDS - start))
  for k in "${!wpids[@]}"; do
    local pid=${wpids[$k]} t1; t1=$(cpu_ticks "$pid")
    kill -0 "$pid" 2>/dev/null || die "$rt: worker ${labels[$k]} died (see $OUT/worker-$rt-${labels[$k]}.log)"
    local cpu; cpu=$(awk -v a="${t0[$k]}" -v b="$t1" -v hz="$CLK_TCK" -v s="$secs" 'BEGIN { printf "%.2f", (b - a) / hz / s * 100 }')
    local rss hwm thr
    rss=$(status_kb "$pid" VmRSS); hwm=$(status_kb "$pid" VmHWM); thr=$(status_kb "$pid" Threads)
    ROWS+=("$(printf '%-8s %-10s %8s %9s %10.1f %10.1f %8s' "$rt" "${labels[$k]}" "$REPLICAS" "$cpu" \
      "$(awk -v k="$rss" 'BEGIN {print k / 1024}')" "$(awk -v k="$hwm" 'BEGIN {print k / 1024}')" "$thr")")
    log "$rt ${labels[$k]}: cpu ${cpu}% rss ${rss} kB hwm ${hwm} kB threads $thr"
  done
  for k in "${!perf_pids[@]}"; do
    wait "${perf_pids[$k]}" 2>/dev/null || true
    perf report -q -i "$OUT/perf-$rt-${labels[$k]}.data" --stdio --no-children --sort dso,symbol \
      --percent-limit 0.5 -g none 2>/dev/null | head -n 60 >"$OUT/perf-$rt-${labels[$k]}.txt" || true
    log "profile: $OUT/perf-$rt-${labels[$k]}.txt"
  done
  stop_pids
  remove_containers
}

for rt in $RUNTIMES; do
  if [[ $rt == docker ]]; then
    if ! docker info >/dev/null 2>&1; then log "docker: engine not reachable, skipped"; continue; fi
    if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
      log "docker: building $IMAGE (scripts/build-images.sh demo-web)"
      scripts/build-images.sh demo-web >"$OUT/build-images.log" 2>&1 || { tail "$OUT/build-images.log" >&2; die "image build failed"; }
    fi
  fi
  run_runtime "$rt"
done

echo
echo "idle worker — $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores, $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet -- crates/vmm-worker 2>/dev/null || echo '+dirty')"
echo "CPU % of one core over ${MEASURE}s after ${SETTLE}s settled; heartbeat every ${INTERVAL_MS} ms; target < 1 %, RSS <= 15 MB"
printf '%-8s %-10s %8s %9s %10s %10s %8s\n' runtime worker replicas "cpu %" "rss MB" "hwm MB" threads
printf '%-8s %-10s %8s %9s %10s %10s %8s\n' -------- ---------- -------- --------- ---------- ---------- --------
for r in "${ROWS[@]}"; do echo "$r"; done
[[ -n "$KEEP_OUT" ]] && echo "logs and profiles: $OUT"
