#!/usr/bin/env bash
# The acs demo cluster in containers (compose.yaml): a 3-node NATS cluster, two vim-brains
# (leader and standby, see compose.yaml), the proxy on
# 127.0.0.1:8080 and three Docker-runtime workers (capacity 2, 3, 4) that start the `web`
# replicas as containers on the network `acs-data`. See docs/DOCKER.md.
#
# Secure by default: every component has its own NATS identity (nkey) and client certificate,
# NATS requires both (mutual TLS) and gives each identity only its role's subjects, and the
# replicas' network `acs-data` does not reach NATS (which is on `acs-control`).
#
# Usage: scripts/compose-demo.sh COMMAND [ARGS...]
#   up [--rebuild]   install missing tools, build the images that are missing (all with
#                    --rebuild), make the credentials (`auth`), start the cluster, wait until
#                    the proxy serves /whoami
#   auth             make the missing credentials for the services of compose.yaml in
#                    .acs/compose/auth (`acsctl auth init --tls`; existing ones are kept), copy
#                    each container's own files to .acs/compose/mounts/<service>, and reload
#                    NATS if it runs (after adding or revoking a worker)
#   down             stop the workers (they stop their replicas), remove every container
#                    including leftover replicas, the networks and the NATS volume (the
#                    credentials stay; `rm -rf .acs/compose` to start afresh)
#   load [ARGS...]   load through the proxy: `acsctl load ARGS` (default
#                    http://127.0.0.1:8080/ --rps 100 --duration 60s), or wrk when
#                    ACS_LOAD_TOOL=wrk
#   status           containers (cluster and replicas), then `acsctl status`
#   watch [ARGS...]  `acsctl watch ARGS` on nats://127.0.0.1:4222 (Ctrl-C to stop)
#   acsctl [ARGS...] any acsctl command as the operator of this cluster (`acsctl scale web 3`)
#   logs [SERVICE]   follow the logs (all services, or one: nats-1..3 brain-1 brain-2 proxy
#                    worker1..3)
#   config           validate compose.yaml and print it resolved
#   check            every component is connected to NATS by name, over TLS, as its own nkey
#                    user; the proxy serves /whoami (`up` ends with it)
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
# The replicas' network (the workers' --docker-network) and the control plane's (NATS).
DATA_NETWORK=acs-data
CONTROL_NETWORK=acs-control
PROXY_URL=http://127.0.0.1:8080
# The three servers as published on the host's loopback (nats-1..3).
NATS_URL_HOST=nats://127.0.0.1:4222,nats://127.0.0.1:4223,nats://127.0.0.1:4224
NATS_MONITORS=(http://127.0.0.1:8222 http://127.0.0.1:8223 http://127.0.0.1:8224)
MONITOR_URL=http://127.0.0.1:9470
NATS_SERVICES=(nats-1 nats-2 nats-3)
IMAGES=(demo-web vmm-worker vim-brain proxy monitor nats)
# The credentials (acsctl's COMPOSE_AUTH_DIR: `acsctl status|watch|scale` run in this
# repository find the operator identity there by themselves), and each container's copy of its
# own files.
AUTH_DIR_REL=.acs/compose/auth
AUTH_DIR="$ROOT/$AUTH_DIR_REL"
MOUNTS_DIR="$ROOT/.acs/compose/mounts"
# The names the server certificate is made for: `nats` in the compose network, the host's
# loopback for acsctl. Always the same order: acsctl keeps the certificate while they match.
TLS_HOSTS=nats,nats-1,nats-2,nats-3,localhost,127.0.0.1
# Filled from compose.yaml by load_services (services with image acs/vmm-worker, their --id).
WORKER_SERVICES=()
WORKER_IDS=()
PROXY_IDS=()
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

# --- acsctl for auth / load / status / watch --------------------------------------------------
ACSCTL=
# The newer of the host build and the static one scripts/build-images.sh makes (an old build
# may predate `acsctl auth`), else acsctl on PATH.
find_acsctl() {
  local c
  ACSCTL=
  for c in "$ROOT/target/release/acsctl" "$ROOT/target/$STATIC_TARGET/release/acsctl"; do
    [ -x "$c" ] || continue
    if [ -z "$ACSCTL" ] || [ "$c" -nt "$ACSCTL" ]; then ACSCTL=$c; fi
  done
  [ -n "$ACSCTL" ] || ACSCTL=$(command -v acsctl 2>/dev/null || true)
  [ -n "$ACSCTL" ]
}

# acsctl as this cluster's operator: its nkey, inbox prefix and client certificate, explicitly
# (acsctl would find them in .acs/compose/auth by itself, but a local cluster's credentials in
# .acs/auth would be tried first).
operator_acsctl() {
  need_acsctl
  [ -f "$AUTH_DIR/operator.nk" ] || die "no operator credentials in $AUTH_DIR_REL (scripts/compose-demo.sh up makes them)"
  NATS_NKEY="$AUTH_DIR/operator.nk" NATS_INBOX_PREFIX=_INBOX_operator \
    NATS_CA="$AUTH_DIR/tls/ca.pem" NATS_CERT="$AUTH_DIR/tls/operator.pem" \
    NATS_KEY="$AUTH_DIR/tls/operator-key.pem" \
    "$ACSCTL" --nats "$NATS_URL_HOST" "$@"
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
    if [ "$img" = nats ] && ! compose config 2>/dev/null | grep 'image: acs/nats:' >/dev/null; then
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

# Replica containers of this cluster's workers: the worker label AND the data network, so
# containers of other acs clusters on this engine (e.g. tests) are never touched.
replica_containers() {
  local id
  for id in "${WORKER_IDS[@]}"; do
    docker ps -aq --filter "label=$WORKER_LABEL=$id" --filter "network=$DATA_NETWORK"
  done | sort -u
}

# "<service> <image> <id>" per service of compose.yaml; id is the value after `--id` in its
# command, or `-`. Reads `compose config` (docker-compose 1.29 and v2 both print the command
# one list item per line).
compose_services() {
  compose config | awk '
    function flush() { if (svc != "") print svc, img, id }
    /^services:/ { in_s = 1; next }
    in_s && /^[^ ]/ { in_s = 0 }
    !in_s { next }
    /^  [A-Za-z0-9_.-]+:$/ { flush(); svc = $1; sub(":$", "", svc); img = "-"; id = "-"; want = 0; next }
    /^    image:/ { img = $2 }
    want && /^ *- / { id = $2; want = 0; next }
    /^ *- --id$/ { want = 1 }
    END { flush() }'
}

# The workers and proxies compose.yaml declares, from their images and --id.
load_services() {
  local svc img id
  WORKER_SERVICES=() WORKER_IDS=() PROXY_IDS=()
  while read -r svc img id; do
    case "$img" in
      acs/vmm-worker:*) WORKER_SERVICES+=("$svc"); WORKER_IDS+=("$id") ;;
      acs/proxy:*) PROXY_IDS+=("$id") ;;
    esac
  done < <(compose_services)
  [ "${#WORKER_IDS[@]}" -gt 0 ] || die "compose.yaml declares no worker (a service with image acs/vmm-worker and --id)"
}

http_code() {
  curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1" 2>/dev/null || true
}

# --- credentials ----------------------------------------------------------------------------
# Files of the auth dir are the invoking user's (seeds and keys 0600, folders 0700), but most
# containers run as uid 10001: each container gets a copy of only its own files, owned by the
# uid its image runs as, with the same modes. That needs root (or sudo) to chown.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo -n "$@"
  else
    die "copying the credentials for the containers needs root (to chown them to the containers' uid): run as root or with passwordless sudo"
  fi
}

# uid:gid the image runs as (its USER; root when unset or when the image is not here yet, as
# the official nats image, which runs as root).
image_owner() {
  local user
  user=$(docker image inspect --format '{{.Config.User}}' "$1" 2>/dev/null || true)
  case "$user" in
    '') echo 0:0 ;;
    *[!0-9:]*) die "image $1 runs as user name $user; give it a numeric uid:gid (USER 10001:10001)" ;;
    *:*) echo "$user" ;;
    *) echo "$user:$user" ;;
  esac
}

# The files (relative to the auth dir) one service's container needs: the server gets
# auth.conf (public keys and permissions) and its certificate; a component its own seed and
# client certificate. Nothing else: a broken-into brain does not hold a worker's key.
service_files() {
  local svc=$1 img=$2 id=$3
  case "$img" in
    acs/vim-brain:*) echo brain.nk tls/ca.pem tls/brain.pem tls/brain-key.pem ;;
    acs/monitor:*) echo monitor.nk monitor.token tls/ca.pem tls/monitor.pem tls/monitor-key.pem ;;
    acs/proxy:*) echo "proxies/$id.nk tls/ca.pem tls/proxies/$id.pem tls/proxies/$id-key.pem" ;;
    acs/vmm-worker:*) echo "workers/$id.nk tls/ca.pem tls/workers/$id.pem tls/workers/$id-key.pem" ;;
    *nats*) [[ "$svc" == nats-[0-9]* ]] && echo auth.conf "$svc/cluster.conf" tls/ca.pem tls/server.pem tls/server-key.pem ;;
  esac
}

# Copies FILES from the auth dir to mounts/SERVICE (folders 0700, files with their modes, all
# owned by OWNER) and removes what is no longer listed. The folder itself stays: it is
# bind-mounted, and a running container keeps seeing the same folder.
stage_service() {
  local svc=$1 owner=$2 f dst mode
  shift 2
  dst="$MOUNTS_DIR/$svc"
  as_root install -d -m 0700 -o "${owner%%:*}" -g "${owner##*:}" "$dst"
  for f in "$@"; do
    [ -f "$AUTH_DIR/$f" ] || die "$AUTH_DIR_REL/$f is missing (scripts/compose-demo.sh auth makes it)"
    mode=$(stat -c %a "$AUTH_DIR/$f")
    # A per-server file (nats-N/cluster.conf) goes to the top of that server's copy.
    local to=${f#"$svc"/}
    as_root install -d -m 0700 -o "${owner%%:*}" -g "${owner##*:}" "$dst/$(dirname "$to")"
    as_root install -m "$mode" -o "${owner%%:*}" -g "${owner##*:}" "$AUTH_DIR/$f" "$dst/$to"
  done
  while IFS= read -r f; do
    f=${f#"$dst"/}
    [[ " $* " == *" $f "* || " $* " == *" $svc/$f "* ]] || as_root rm -f "$dst/$f"
  done < <(as_root find "$dst" -type f)
}

# Makes what is missing (keeps every existing seed and certificate), then stages each
# service's files and removes the copies of services compose.yaml no longer has.
cmd_auth() {
  need_docker
  need_compose
  load_services
  need_acsctl
  local workers proxies svc img id files staged=()
  workers=$(IFS=,; echo "${WORKER_IDS[*]}")
  proxies=$(IFS=,; echo "${PROXY_IDS[*]}")
  say "credentials in $AUTH_DIR_REL: acsctl auth init --workers $workers --proxies $proxies --tls-host $TLS_HOSTS"
  "$ACSCTL" auth --dir "$AUTH_DIR" init --workers "$workers" ${proxies:+--proxies "$proxies"} \
    --tls --tls-host "$TLS_HOSTS" | sed 's/^/  /'
  make_cluster_confs
  # The monitor's dashboard and REST API bearer token (the same as `acsctl up`'s monitor.token).
  if [ ! -s "$AUTH_DIR/monitor.token" ]; then
    (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$AUTH_DIR/monitor.token")
    say "monitor dashboard token: $AUTH_DIR_REL/monitor.token"
  fi
  mkdir -p "$MOUNTS_DIR"
  chmod 0700 "$ROOT/.acs/compose" "$MOUNTS_DIR"
  while read -r svc img id; do
    files=$(service_files "$svc" "$img" "$id")
    [ -n "$files" ] || continue
    # shellcheck disable=SC2086 # one word per file
    stage_service "$svc" "$(image_owner "$img")" $files
    staged+=("$svc")
  done < <(compose_services)
  for svc in "$MOUNTS_DIR"/*; do
    [ -d "$svc" ] || continue
    [[ " ${staged[*]} " == *" $(basename "$svc") "* ]] || { as_root rm -rf "$svc"; say "removed the copy for $(basename "$svc")"; }
  done
  say "each container's own credentials: .acs/compose/mounts/{$(IFS=,; echo "${staged[*]}")}"
  local n
  for n in "${NATS_SERVICES[@]}"; do
    if [ -n "$(compose ps -q "$n" 2>/dev/null)" ]; then
      compose kill -s HUP "$n" >/dev/null 2>&1 && say "$n reloaded auth.conf"
    fi
  done
}

# The route password (made once, 0600) and, per server, its cluster block: routes to the other
# two over TLS (verified against the local CA, by host name) with that password. Routes are
# server-to-server only; clients never see the password.
make_cluster_confs() {
  local pass_file="$AUTH_DIR/route.pass" n other routes
  if [ ! -s "$pass_file" ]; then
    (umask 077; head -c 24 /dev/urandom | base64 | tr -d '/+=\n' >"$pass_file")
  fi
  local pass
  pass=$(cat "$pass_file")
  for n in "${NATS_SERVICES[@]}"; do
    routes=
    for other in "${NATS_SERVICES[@]}"; do
      [ "$other" = "$n" ] && continue
      routes+="    \"nats://route:$pass@$other:6222\"\n"
    done
    mkdir -p "$AUTH_DIR/$n"
    chmod 0700 "$AUTH_DIR/$n"
    (umask 077; printf '%b' "# GENERATED by scripts/compose-demo.sh auth: the routes of $n.
cluster {
  name: acs
  listen: 0.0.0.0:6222
  authorization { user: route, password: \"$pass\", timeout: 2 }
  tls {
    cert_file: \"/etc/nats/auth/tls/server.pem\"
    key_file: \"/etc/nats/auth/tls/server-key.pem\"
    ca_file: \"/etc/nats/auth/tls/ca.pem\"
    timeout: 2
  }
  routes: [
$routes  ]
}
" >"$AUTH_DIR/$n/cluster.conf")
  done
}

# nats-server -t with the mounts compose.yaml gives it: a bad config or a missing certificate
# shows here with the server's own words, not as a restarting container.
check_nats_config() {
  local img
  img=$(compose_services | awk '$1 == "nats-1" { print $2 }')
  [ -n "$img" ] && docker image inspect "$img" >/dev/null 2>&1 || return 0
  docker run --rm --network none -e NATS_SERVER_NAME=nats-1 \
    -v "$ROOT/nats/compose.conf:/etc/nats/nats.conf:ro" \
    -v "$MOUNTS_DIR/nats-1:/etc/nats/auth:ro" \
    "$img" -c /etc/nats/nats.conf -t >/dev/null 2>&1 \
    || die "nats-server rejects nats/compose.conf with the credentials: docker run --rm -e NATS_SERVER_NAME=nats-1 -v \$PWD/nats/compose.conf:/etc/nats/nats.conf:ro -v \$PWD/.acs/compose/mounts/nats-1:/etc/nats/auth:ro $img -c /etc/nats/nats.conf -t"
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
  scripts/install-deps.sh run
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

  cmd_auth
  check_nats_config
  # Both brains always (compose.yaml): the leader lease keeps the standby from acting.
  brain_has_lease || die "acs/vim-brain:dev has no --lease (an old image): scripts/compose-demo.sh up --rebuild"
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
                                          (acsctl finds the operator credentials in $AUTH_DIR_REL)
  checks/compose-security.sh              try the known attacks against this cluster
  scripts/compose-demo.sh down            stop and remove everything
EOF
}

# Whether the brain image has the leader lease (`vim-brain --help` lists --lease). Not
# `grep -q`: under pipefail its early exit fails the writer with SIGPIPE, and so the test.
brain_has_lease() {
  docker run --rm acs/vim-brain:dev --help 2>/dev/null | grep -- '--lease <' >/dev/null
}

# Every component reached NATS by its compose name (nats://nats:4222): their static glibc
# binaries resolved `nats` through Docker's embedded DNS. The NATS monitoring endpoint lists the
# connections by client name, with the TLS version and the nkey each one authenticated as.
cmd_check() {
  command -v curl >/dev/null 2>&1 || die "curl not found"
  need_compose
  load_services
  local want=("vim-brain" "acs-monitor") id deadline conns missing m
  for id in "${PROXY_IDS[@]}"; do want+=("acs-proxy $id"); done
  for id in "${WORKER_IDS[@]}"; do want+=("vmm-worker $id"); done
  deadline=$((SECONDS + 30))
  while :; do
    # Each component is connected to one of the three servers: all of their connections.
    conns=$(for m in "${NATS_MONITORS[@]}"; do curl -s --max-time 2 "$m/connz?limit=1024&auth=true" || true; echo; done)
    missing=()
    for id in "${want[@]}"; do
      connected_securely "$id" <<<"$conns" || missing+=("$id")
    done
    [ "${#missing[@]}" -eq 0 ] && break
    [ "$SECONDS" -lt "$deadline" ] || die "not connected to the NATS cluster (over TLS, with an nkey) within 30s: ${missing[*]} (scripts/compose-demo.sh logs)"
    sleep 1
  done
  say "check: connected to the NATS cluster by name (nats-1..3), each over TLS as its own nkey user: ${want[*]}"
  check_routes
  local code
  code=$(http_code "$PROXY_URL/whoami")
  [ "$code" = 200 ] || die "check: $PROXY_URL/whoami answered HTTP $code"
  say "check: $PROXY_URL/whoami answers 200"
  # The monitor's dashboard and API: refused without the token, answered with it.
  code=$(http_code "$MONITOR_URL/api/v1/history")
  [ "$code" = 401 ] || die "check: $MONITOR_URL/api/v1/history without the token answered HTTP $code, not 401"
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -H "Authorization: Bearer $(cat "$AUTH_DIR/monitor.token")" \
    "$MONITOR_URL/api/v1/history?kind=decision&limit=1" 2>/dev/null || true)
  [ "$code" = 200 ] || die "check: $MONITOR_URL/api/v1/history with the token answered HTTP $code"
  say "check: the dashboard $MONITOR_URL/ asks for the token in $AUTH_DIR/monitor.token; its API answers with it and refuses without"
}

# Whether the connz JSON on stdin has a connection named $1 with TLS and an nkey user (U...).
# Without python3 only the name is checked.
connected_securely() {
  if ! command -v python3 >/dev/null 2>&1; then
    grep -q "\"name\": *\"$1\"" && return 0
    return 1
  fi
  python3 -c '
import json, sys
conns, text, i, dec = [], sys.stdin.read(), 0, json.JSONDecoder()
while True:  # one JSON document per server, one after the other
    while i < len(text) and text[i].isspace():
        i += 1
    if i >= len(text):
        break
    doc, i = dec.raw_decode(text, i)
    conns += doc.get("connections") or []
ok = any(c.get("name") == sys.argv[1] and c.get("tls_version")
         and str(c.get("authorized_user", "")).startswith("U") for c in conns)
sys.exit(0 if ok else 1)' "$1" 2>/dev/null
}

# Each server has routes to the two others (the cluster formed over TLS with the route password).
check_routes() {
  local m n
  for m in "${NATS_MONITORS[@]}"; do
    n=$(curl -s --max-time 2 "$m/routez" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("num_routes", 0))' 2>/dev/null || echo 0)
    [ "$n" -ge 2 ] || die "check: $m/routez shows $n routes (want 2: the NATS cluster did not form; scripts/compose-demo.sh logs nats-1)"
  done
  say "check: the 3 NATS servers are routed to each other"
}

cmd_down() {
  need_docker
  need_compose
  load_services
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
  local net attached left_net=0
  for net in "$DATA_NETWORK" "$CONTROL_NETWORK"; do
    docker network inspect "$net" >/dev/null 2>&1 || continue
    # Still there: something else is attached. Say what instead of removing foreign containers.
    attached=$(docker network inspect "$net" --format '{{range .Containers}}{{.Name}} {{end}}')
    if [ -z "${attached// /}" ]; then
      docker network rm "$net" >/dev/null && say "removed network $net"
    else
      say "network $net still has containers attached: $attached(remove them, then: docker network rm $net)"
      left_net=1
    fi
  done
  [ "$left_net" -eq 0 ] || return 1
  say "down"
}

cmd_load() {
  local args=("$@")
  [ "${#args[@]}" -gt 0 ] || args=("$PROXY_URL/" --rps 100 --duration 60s)
  if [ "${ACS_LOAD_TOOL:-acsctl}" = wrk ]; then
    command -v wrk >/dev/null 2>&1 || die "wrk not found (scripts/install-deps.sh test installs it)"
    [ "$#" -gt 0 ] || args=(-t2 -c16 -d60s "$PROXY_URL/")
    exec wrk "${args[@]}"
  fi
  need_acsctl
  exec "$ACSCTL" load "${args[@]}"
}

cmd_status() {
  need_docker
  need_compose
  load_services
  compose ps
  echo
  echo "replica containers (label $WORKER_LABEL, network $DATA_NETWORK):"
  local ids
  ids=$(replica_containers)
  if [ -n "$ids" ]; then
    # shellcheck disable=SC2086
    docker ps -a --filter "network=$DATA_NETWORK" --filter "label=$WORKER_LABEL" \
      --format 'table {{.Names}}\t{{.Label "'"$WORKER_LABEL"'"}}\t{{.Status}}\t{{.Image}}'
  else
    echo "  (none)"
  fi
  echo
  operator_acsctl status || say "acsctl status failed (is the cluster up?)"
}

cmd_watch() {
  operator_acsctl watch "$@"
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
  auth) cmd_auth "$@" ;;
  down) cmd_down "$@" ;;
  acsctl) operator_acsctl "$@" ;;
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
