#!/usr/bin/env bash
# The acs demo cluster in containers (compose.yaml): NATS, vim-brain, the proxy on
# 127.0.0.1:8080 and three Docker-runtime workers (capacity 2, 3, 4) that start the `web`
# replicas as containers on the network `acs-demo`. See docs/DOCKER.md.
#
# Usage: scripts/compose-demo.sh COMMAND [ARGS...]
#   up [--rebuild]   install missing tools, build the images that are missing (all with
#                    --rebuild), start the cluster, wait until the proxy serves /whoami
#   down             stop the workers (they stop their replicas), remove every container
#                    including leftover replicas, the network acs-demo and the NATS volume
#   load [ARGS...]   load through the proxy: `acsctl load ARGS` (default
#                    http://127.0.0.1:8080/ --rps 100 --duration 60s), or wrk when
#                    ACS_LOAD_TOOL=wrk
#   status           containers (cluster and replicas), then `acsctl status`
#   watch [ARGS...]  `acsctl watch ARGS` on nats://127.0.0.1:4222 (Ctrl-C to stop)
#   logs [SERVICE]   follow the logs (all services, or one: nats brain proxy worker1..3)
#   config           validate compose.yaml and print it resolved
#   check            every component is connected to NATS by name, the proxy serves /whoami
#                    (`up` ends with it)
#
# Environment: COMPOSE_PROJECT_NAME (default acs), ACS_LOG (RUST_LOG of the components, default
# info), ACS_READY_TIMEOUT (seconds `up` waits for a served request, default 120).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

say() { printf 'compose-demo: %s\n' "$*"; }
die() { printf 'compose-demo: error: %s\n' "$*" >&2; exit 1; }

export COMPOSE_PROJECT_NAME=${COMPOSE_PROJECT_NAME:-acs}
COMPOSE_FILE_PATH="$ROOT/compose.yaml"
NETWORK=acs-demo
PROXY_URL=http://127.0.0.1:8080
NATS_URL_HOST=nats://127.0.0.1:4222
NATS_MONITOR=http://127.0.0.1:8222
IMAGES=(demo-web vmm-worker vim-brain proxy nats)
WORKER_SERVICES=(worker1 worker2 worker3)
WORKER_IDS=(w1 w2 w3)
# The label the Docker runtime puts on the replica containers it starts, with the worker id as
# value (crates/vmm-worker/src/runtime/docker.rs).
WORKER_LABEL=${ACS_WORKER_LABEL:-acs.worker}
READY_TIMEOUT=${ACS_READY_TIMEOUT:-120}
STATIC_TARGET=x86_64-unknown-linux-gnu

# --- docker-compose v1, or the `docker compose` plugin ----------------------------------------
COMPOSE=()
find_compose() {
  if command -v docker-compose >/dev/null 2>&1; then
    COMPOSE=(docker-compose)
  elif docker compose version >/dev/null 2>&1; then
    COMPOSE=(docker compose)
  else
    return 1
  fi
}

compose() { "${COMPOSE[@]}" -f "$COMPOSE_FILE_PATH" -p "$COMPOSE_PROJECT_NAME" "$@"; }

need_docker() {
  command -v docker >/dev/null 2>&1 || die "docker not found; install Docker Engine first"
  docker info >/dev/null 2>&1 || die "cannot talk to the Docker engine (is it running? are you in the docker group?)"
}

need_compose() {
  find_compose || die "neither docker-compose nor 'docker compose' found (scripts/compose-demo.sh up installs docker-compose)"
}

install_compose() {
  find_compose && return 0
  command -v apt-get >/dev/null 2>&1 || die "no docker-compose and no apt-get: install docker-compose or the compose plugin"
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  say "apt-get install docker-compose"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-compose
  find_compose || die "docker-compose still missing after apt-get install"
}

# --- acsctl for load / status / watch ---------------------------------------------------------
ACSCTL=
find_acsctl() {
  local c
  for c in "$ROOT/target/release/acsctl" "$ROOT/target/$STATIC_TARGET/release/acsctl"; do
    [ -x "$c" ] && { ACSCTL=$c; return 0; }
  done
  ACSCTL=$(command -v acsctl 2>/dev/null || true)
  [ -n "$ACSCTL" ]
}

need_acsctl() {
  find_acsctl && return 0
  # The same target, flags and package set as scripts/build-images.sh (which builds acsctl too),
  # so cargo reuses everything that script built.
  say "building acsctl with the image binaries (cargo build --release --target $STATIC_TARGET)"
  RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
    cargo build --release --target "$STATIC_TARGET" \
      -p demo-web -p vmm-worker -p vim-brain -p acs-proxy -p acsctl
  find_acsctl || die "acsctl not found after the build"
}

# --- helpers --------------------------------------------------------------------------------
# The acs images this cluster needs: all but acs/nats when compose.yaml uses another NATS image
# (e.g. the official nats:2.9, docs/DOCKER.md).
needed_images() {
  local img
  for img in "${IMAGES[@]}"; do
    if [ "$img" = nats ] && ! compose config 2>/dev/null | grep -q 'image: acs/nats:'; then
      continue
    fi
    printf '%s\n' "$img"
  done
}

missing_images() {
  local img
  for img in $(needed_images); do
    docker image inspect "acs/$img:dev" >/dev/null 2>&1 || printf '%s\n' "$img"
  done
}

# Replica containers of this cluster's workers: the worker label AND the demo network, so
# containers of other acs clusters on this engine (e.g. tests) are never touched.
replica_containers() {
  local id
  for id in "${WORKER_IDS[@]}"; do
    docker ps -aq --filter "label=$WORKER_LABEL=$id" --filter "network=$NETWORK"
  done | sort -u
}

http_code() {
  curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1" 2>/dev/null || true
}

# --- commands -------------------------------------------------------------------------------
cmd_up() {
  local rebuild=0
  for a in "$@"; do
    case "$a" in
      --rebuild) rebuild=1 ;;
      *) die "up: unknown argument $a" ;;
    esac
  done
  need_docker
  scripts/install-deps.sh
  install_compose
  command -v curl >/dev/null 2>&1 || die "curl not found (apt-get install curl)"

  if [ "$rebuild" -eq 1 ]; then
    # shellcheck disable=SC2046 # one word per image
    scripts/build-images.sh $(needed_images)
  else
    local missing
    missing=$(missing_images | tr '\n' ' ')
    if [ -n "${missing// /}" ]; then
      say "building missing images: $missing"
      # shellcheck disable=SC2086 # one word per image
      scripts/build-images.sh $missing
    else
      say "images present (scripts/compose-demo.sh up --rebuild rebuilds them)"
    fi
  fi

  say "${COMPOSE[*]} -p $COMPOSE_PROJECT_NAME up -d"
  compose up -d

  say "waiting for the proxy on $PROXY_URL"
  local deadline=$((SECONDS + 60)) code
  while :; do
    code=$(http_code "$PROXY_URL/whoami")
    [ -n "$code" ] && [ "$code" != 000 ] && break
    [ "$SECONDS" -lt "$deadline" ] || { compose ps; die "the proxy does not answer on $PROXY_URL (scripts/compose-demo.sh logs proxy)"; }
    sleep 1
  done
  say "proxy answers (HTTP $code); waiting up to ${READY_TIMEOUT}s for a replica to serve /whoami"
  deadline=$((SECONDS + READY_TIMEOUT))
  while [ "$code" != 200 ]; do
    [ "$SECONDS" -lt "$deadline" ] || {
      compose ps
      die "no replica served $PROXY_URL/whoami within ${READY_TIMEOUT}s (last HTTP $code); see scripts/compose-demo.sh logs brain / logs worker1"
    }
    sleep 1
    code=$(http_code "$PROXY_URL/whoami")
  done
  say "ready: $(curl -s --max-time 2 "$PROXY_URL/whoami")"
  cmd_check
  cat <<EOF

  curl -s $PROXY_URL/whoami   which replica answered
  scripts/compose-demo.sh watch           the event stream (acsctl watch on $NATS_URL_HOST)
  scripts/compose-demo.sh load            100 req/s for 60 s: watch it scale out
  scripts/compose-demo.sh status          containers, services, workers
  acsctl scale web 5 / acsctl scale web auto   pin a replica count / back to the policy
  scripts/compose-demo.sh down            stop and remove everything
EOF
}

# Every component reached NATS by its compose name (nats://nats:4222): their static glibc
# binaries resolved `nats` through Docker's embedded DNS. The NATS monitoring endpoint lists the
# connections by client name.
cmd_check() {
  command -v curl >/dev/null 2>&1 || die "curl not found"
  local want=("vim-brain" "acs-proxy-p1") id deadline names missing
  for id in "${WORKER_IDS[@]}"; do want+=("vmm-worker $id"); done
  deadline=$((SECONDS + 30))
  while :; do
    names=$(curl -s --max-time 2 "$NATS_MONITOR/connz?limit=1024" | grep -o '"name": *"[^"]*"' | sed 's/.*: *"//; s/"$//')
    missing=()
    for id in "${want[@]}"; do
      grep -qxF "$id" <<<"$names" || missing+=("$id")
    done
    [ "${#missing[@]}" -eq 0 ] && break
    [ "$SECONDS" -lt "$deadline" ] || die "not connected to nats://nats:4222 within 30s: ${missing[*]} (scripts/compose-demo.sh logs)"
    sleep 1
  done
  say "check: connected to NATS by name (nats://nats:4222): ${want[*]}"
  local code
  code=$(http_code "$PROXY_URL/whoami")
  [ "$code" = 200 ] || die "check: $PROXY_URL/whoami answered HTTP $code"
  say "check: $PROXY_URL/whoami answers 200"
}

cmd_down() {
  need_docker
  need_compose
  # Workers first, while NATS still runs: on SIGTERM each stops the replicas it started.
  say "stopping the workers (they stop their replicas)"
  compose stop -t 30 "${WORKER_SERVICES[@]}" || true
  local left
  left=$(replica_containers)
  if [ -n "$left" ]; then
    say "removing $(printf '%s\n' "$left" | wc -l) leftover replica container(s)"
    # shellcheck disable=SC2086 # one id per word
    docker rm -f $left >/dev/null
  fi
  say "${COMPOSE[*]} -p $COMPOSE_PROJECT_NAME down --volumes --remove-orphans"
  compose down --volumes --remove-orphans
  if docker network inspect "$NETWORK" >/dev/null 2>&1; then
    # Still there: something else is attached. Say what instead of removing foreign containers.
    local attached
    attached=$(docker network inspect "$NETWORK" --format '{{range .Containers}}{{.Name}} {{end}}')
    if [ -z "${attached// /}" ]; then
      docker network rm "$NETWORK" >/dev/null && say "removed network $NETWORK"
    else
      say "network $NETWORK still has containers attached: $attached(remove them, then: docker network rm $NETWORK)"
      return 1
    fi
  fi
  say "down"
}

cmd_load() {
  local args=("$@")
  [ "${#args[@]}" -gt 0 ] || args=("$PROXY_URL/" --rps 100 --duration 60s)
  if [ "${ACS_LOAD_TOOL:-acsctl}" = wrk ]; then
    command -v wrk >/dev/null 2>&1 || die "wrk not found (scripts/install-deps.sh installs it)"
    [ "$#" -gt 0 ] || args=(-t2 -c16 -d60s "$PROXY_URL/")
    exec wrk "${args[@]}"
  fi
  need_acsctl
  exec "$ACSCTL" load "${args[@]}"
}

cmd_status() {
  need_docker
  need_compose
  compose ps
  echo
  echo "replica containers (label $WORKER_LABEL, network $NETWORK):"
  local ids
  ids=$(replica_containers)
  if [ -n "$ids" ]; then
    # shellcheck disable=SC2086
    docker ps -a --filter "network=$NETWORK" --filter "label=$WORKER_LABEL" \
      --format 'table {{.Names}}\t{{.Label "'"$WORKER_LABEL"'"}}\t{{.Status}}\t{{.Image}}'
  else
    echo "  (none)"
  fi
  echo
  need_acsctl
  "$ACSCTL" --nats "$NATS_URL_HOST" status || say "acsctl status failed (is the cluster up?)"
}

cmd_watch() {
  need_acsctl
  exec "$ACSCTL" --nats "$NATS_URL_HOST" watch "$@"
}

cmd_logs() {
  need_compose
  compose logs -f --tail=100 "$@"
}

cmd_config() {
  need_compose
  compose config
}

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

cmd=${1:-}
[ "$#" -eq 0 ] || shift
case "$cmd" in
  up) cmd_up "$@" ;;
  down) cmd_down "$@" ;;
  load) cmd_load "$@" ;;
  status) cmd_status "$@" ;;
  watch) cmd_watch "$@" ;;
  logs) cmd_logs "$@" ;;
  config) cmd_config "$@" ;;
  check) cmd_check "$@" ;;
  -h|--help|help) usage ;;
  '') usage; exit 2 ;;
  *) usage >&2; die "unknown command $cmd" ;;
esac
