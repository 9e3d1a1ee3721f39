#!/usr/bin/env bash
# compose-security.sh — the known attacks on the cluster, tried for real against the compose
# demo cluster (docs/SECURITY.md says what stops each).
#
# Each row is one attack (or one control check), tried as an outsider, or with a credential
# that leaked, and what stopped it:
#   1. connecting without TLS, without the CA, with a client certificate of another CA, with no
#      nkey, or with an nkey the server does not know;
#   2. the arbitrary container: a WorkerCommand on acs.cmd.worker.w3 starting an undeclared
#      image (acs/nats:dev), with no credential, with worker w1's, and with the brain's (the
#      server lets the brain through; w3's allow-list refuses); no container appears;
#   3. the /login route hijack: a backend `reset` with version 2^63 on acs.backends.evil and
#      acs.backends.web pointing /login at an attacker's listener, with no credential, the
#      viewer's and w1's; /login is still served by a replica, the listener gets nothing, and a
#      legitimate change (`acsctl scale web 2`) still reaches the proxy;
#   4. the viewer can watch acs.> but cannot scale;
#   5. a replica container cannot open a TCP connection to NATS (its network namespace, entered
#      from the host with nsenter), while the proxy can (control).
#
# Usage: checks/compose-security.sh [--keep]
#   Uses the running compose cluster if there is one (and leaves it running); otherwise starts
#   it with `scripts/compose-demo.sh up` and removes it at the end (`--keep` keeps it).
#   Exit status 0 when every row passes.
#
# Needs: what scripts/compose-demo.sh needs, root (nsenter, and the copies of the credentials),
# python3 with the `cryptography` package (a raw NATS client that signs the nkey challenge),
# curl. CI does not run it (no Docker engine there); docs/DOCKER.md shows a run.
set -euo pipefail
CHECK_TAG=compose-security
# shellcheck source=checks/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KEEP=0
for a in "$@"; do
  case "$a" in
    --keep) KEEP=1 ;;
    -h|--help) help_from_header "$0"; exit 0 ;;
    *) die "unknown argument $a (see --help)" ;;
  esac
done

AUTH=.acs/compose/auth
PROXY_URL=http://127.0.0.1:8080
NATS_HOST=127.0.0.1
NATS_PORT=4222

[ "$(id -u)" -eq 0 ] || die "run as root (nsenter into container network namespaces)"
acscheck can-sign || die "python3 lacks the cryptography package (pip install cryptography)"
command -v nsenter >/dev/null 2>&1 || die "nsenter not found (apt-get install util-linux)"
command -v curl >/dev/null 2>&1 || die "curl not found"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/acs-security.XXXXXX")
LISTENER_PID=
STARTED=0
cleanup() {
  [ -z "$LISTENER_PID" ] || kill "$LISTENER_PID" 2>/dev/null || true
  rm -rf "$WORK"
  if [ "$STARTED" -eq 1 ] && [ "$KEEP" -eq 0 ]; then
    say "removing the cluster this run started ($DEMO down; --keep keeps it)"
    "$DEMO" down >&2 || true
  fi
}
trap cleanup EXIT

# --- the cluster ----------------------------------------------------------------------------
nats_running() { [ -n "$(docker ps -q --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME" --filter label=com.docker.compose.service=nats-1)" ]; }
if nats_running && [ "$(http_code "$PROXY_URL/whoami")" = 200 ]; then
  say "using the running compose cluster (project $COMPOSE_PROJECT_NAME)"
else
  say "starting the compose cluster: $DEMO up"
  STARTED=1
  "$DEMO" up >&2
fi
[ -f "$AUTH/operator.nk" ] || die "no credentials in $AUTH ($DEMO up makes them)"

container_of() { docker ps -q --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME" --filter "label=com.docker.compose.service=$1" | head -n1; }
NATS_CID=$(container_of nats-1)   # one server of the 3-node cluster; they share auth.conf
PROXY_CID=$(container_of proxy)
NATS_IP=$(docker inspect -f '{{with index .NetworkSettings.Networks "acs-control"}}{{.IPAddress}}{{end}}' "$NATS_CID")
GATEWAY=$(docker network inspect acs-control -f '{{range .IPAM.Config}}{{.Gateway}}{{end}}')
[ -n "$NATS_IP" ] || die "the nats container has no address on acs-control"

# --- a raw NATS client ------------------------------------------------------------------------
# `acscheck nats-probe TLS STEM NKEY ACTION [ARGS]` (checks/acscheck.py): TLS is
# plain|noca|nocert|wrong|ok (ok: the cluster's CA and the client certificate STEM), NKEY a seed
# file or `-`. Prints one line, `refused: ...`, `accepted: ...` or `reply: ...`.

# A CA and certificates that are not the cluster's: `acsctl auth init --tls` in a scratch folder.
find_acsctl() {
  local c best=
  for c in target/release/acsctl target/x86_64-unknown-linux-gnu/release/acsctl; do
    [ -x "$c" ] || continue
    if [ -z "$best" ] || [ "$c" -nt "$best" ]; then best=$c; fi
  done
  [ -n "$best" ] || best=$(command -v acsctl || true)
  [ -n "$best" ] || die "acsctl not found (scripts/build-images.sh builds it)"
  echo "$best"
}
ACSCTL=$(find_acsctl)
"$ACSCTL" auth --dir "$WORK/foreign" init --workers w1 --tls >/dev/null

probe() {
  acscheck nats-probe --host "$NATS_HOST" --port "$NATS_PORT" --tls-dir "$AUTH/tls" \
    --wrong-tls-dir "$WORK/foreign/tls" "$@" 2>&1 | tail -n1
}

# probe, plus what the server logged about it (its last [ERR] line since the probe started):
# for a refused handshake the client only sees a reset or an alert, the server says why.
probe_logged() {
  local t0 r said
  t0=$(date +%s.%N)
  r=$(probe "$@")
  sleep 0.3
  said=$(docker logs --since "$t0" "$NATS_CID" 2>&1 | grep '\[ERR\]' | tail -n1 | sed 's/^.*cid:[0-9]* - //; s/^"[^"]*" - //' || true)
  if [ -n "$said" ]; then echo "$r; server: $said"; else echo "$r"; fi
}

# acsctl as one identity of the cluster, explicitly (no auto-discovery).
as_role() {
  local stem=$1 prefix=$2
  shift 2
  env NATS_NKEY="$AUTH/$stem.nk" NATS_CA="$AUTH/tls/ca.pem" NATS_CERT="$AUTH/tls/$stem.pem" \
    NATS_KEY="$AUTH/tls/$stem-key.pem" ${prefix:+NATS_INBOX_PREFIX=$prefix} \
    "$ACSCTL" --nats "nats://$NATS_HOST:$NATS_PORT" "$@"
}
operator() { as_role operator _INBOX_operator "$@"; }

# --- the table ------------------------------------------------------------------------------
ROWS=()
FAILED=0
row() { # PASS|FAIL  attack  identity  what happened / what stopped it
  ROWS+=("$1|$2|$3|$4")
  [ "$1" = PASS ] || FAILED=$((FAILED + 1))
  printf '  %-4s %-38s %-22s %s\n' "$1" "$2" "$3" "$4" >&2
}
# expect_refused ATTACK IDENTITY RESULT: PASS when the probe was refused.
expect_refused() {
  case "$3" in
    refused:*) row PASS "$1" "$2" "${3#refused: }" ;;
    *) row FAIL "$1" "$2" "$3" ;;
  esac
}
short() { tr -d '\r' | tr '\n' ' ' | sed 's/  */ /g; s/^ //; s/ $//' | cut -c1-110; }

say "1. connecting"
expect_refused "connect without TLS" "none" "$(probe_logged plain - - hello)"
expect_refused "connect without the CA (system roots)" "none (viewer cert)" "$(probe noca viewer - hello)"
expect_refused "connect without a client certificate" "none" "$(probe_logged nocert - - hello)"
expect_refused "client certificate of another CA" "foreign viewer cert" "$(probe_logged wrong viewer - hello)"
expect_refused "valid certificate, no credential" "none (viewer cert)" "$(probe_logged ok viewer - hello)"
expect_refused "valid certificate, unknown nkey" "foreign viewer nkey" "$(probe_logged ok viewer "$WORK/foreign/viewer.nk" hello)"
r=$(probe ok viewer "$AUTH/viewer.nk" hello)
case "$r" in accepted:*) row PASS "control: a known identity connects" "viewer" "${r#accepted: }" ;; *) row FAIL "control: a known identity connects" "viewer" "$r" ;; esac

say "2. the arbitrary container (acs/nats:dev on w3)"
now_ms=$(($(date +%s) * 1000))
CMD=$(printf '{"v":1,"id":"attack-%s","issued_ms":%s,"action":"start","replica":"evil-1","spec":{"service":"web","image":"acs/nats:dev","command":[],"port":4222,"health_path":"/healthz","env":{}}}' "$$" "$now_ms")
expect_refused "start acs/nats:dev on acs.cmd.worker.w3" "none" "$(probe ok viewer - request acs.cmd.worker.w3 "$CMD" _INBOX)"
expect_refused "start acs/nats:dev on acs.cmd.worker.w3" "worker w1" "$(probe ok workers/w1 "$AUTH/workers/w1.nk" pub acs.cmd.worker.w3 "$CMD")"
expect_refused "start acs/nats:dev on acs.cmd.worker.w3" "viewer" "$(probe ok viewer "$AUTH/viewer.nk" pub acs.cmd.worker.w3 "$CMD")"
r=$(probe ok brain "$AUTH/brain.nk" request acs.cmd.worker.w3 "$CMD" _INBOX_brain)
case "$r" in
  reply:*'"ok":false'*) row PASS "start acs/nats:dev on acs.cmd.worker.w3" "brain (leaked)" "w3's allow-list: $(sed 's/^reply: //' <<<"$r" | acscheck json-get error | short)" ;;
  *) row FAIL "start acs/nats:dev on acs.cmd.worker.w3" "brain (leaked)" "$r" ;;
esac
sleep 1
evil=$(docker ps -a --filter label=acs.replica=evil-1 -q; docker ps -a --filter label=acs.worker --format '{{.Image}}' | grep -v '^acs/demo-web:dev$' || true)
if [ -z "$evil" ]; then
  row PASS "no container appeared" "-" "label acs.worker: only acs/demo-web:dev; no acs.replica=evil-1"
else
  row FAIL "no container appeared" "-" "$(short <<<"$evil")"
fi

say "3. the /login route hijack (version 2^63)"
# The attacker's listener, where the proxy could reach it (the host on acs-control).
acscheck listen "$GATEWAY" 18099 "$WORK/hits" &
LISTENER_PID=$!
: >"$WORK/hits"
sleep 0.5
for svc in evil web; do
  UPD=$(printf '{"v":1,"service":"%s","version":9223372036854775808,"ts_ms":%s,"selection":"round_robin","change":"reset","route":{"path_prefix":"/login"},"backends":[{"id":"evil-1","addr":"%s:18099","worker":"w1","draining":false}]}' "$svc" "$now_ms" "$GATEWAY")
  expect_refused "reset on acs.backends.$svc" "none" "$(probe ok viewer - pub "acs.backends.$svc" "$UPD")"
  expect_refused "reset on acs.backends.$svc" "viewer" "$(probe ok viewer "$AUTH/viewer.nk" pub "acs.backends.$svc" "$UPD")"
  expect_refused "reset on acs.backends.$svc" "worker w1" "$(probe ok workers/w1 "$AUTH/workers/w1.nk" pub "acs.backends.$svc" "$UPD")"
done
sleep 1
codes=$(for _ in 1 2 3 4 5; do curl -s --max-time 2 "$PROXY_URL/login"; done | sort | uniq -c | short)
if [ "$codes" = "5 no route for /login" ] && [ ! -s "$WORK/hits" ]; then
  row PASS "GET /login after the attempts" "-" "5/5 answered by a replica (demo-web 404), attacker got 0 requests"
else
  row FAIL "GET /login after the attempts" "-" "answers: $codes; attacker hits: $(wc -l <"$WORK/hits")"
fi
# Control: the attacker's listener is reachable from the proxy, so 0 hits means no route.
pid=$(docker inspect -f '{{.State.Pid}}' "$PROXY_CID")
if nsenter -t "$pid" -n curl -s --max-time 2 "http://$GATEWAY:18099/probe" >/dev/null 2>&1; then
  row PASS "control: proxy can reach the attacker" "-" "$GATEWAY:18099 answers from the proxy's netns"
  : >"$WORK/hits"
else
  row FAIL "control: proxy can reach the attacker" "-" "$GATEWAY:18099 unreachable from the proxy: the /login row proves less"
fi
# Legitimate updates still apply: pin web at 2 and wait for two distinct replicas to answer.
if out=$(operator scale web 2 2>&1); then
  seen=
  for _ in $(seq 1 90); do
    seen=$(for _ in $(seq 1 12); do curl -s --max-time 2 "$PROXY_URL/whoami"; echo; done | acscheck distinct-hostnames)
    [ "$seen" -ge 2 ] && break
    sleep 1
  done
  if [ "$seen" -ge 2 ]; then
    row PASS "legit: acsctl scale web 2" "operator" "2 replicas serve /whoami through the proxy"
  else
    row FAIL "legit: acsctl scale web 2" "operator" "$seen distinct replica(s) answer after 90 s"
  fi
else
  row FAIL "legit: acsctl scale web 2" "operator" "$(short <<<"$out")"
fi

say "4. the viewer"
as_role viewer '' watch >"$WORK/watch" 2>&1 &
watch_pid=$!
sleep 8
kill "$watch_pid" 2>/dev/null || true
wait "$watch_pid" 2>/dev/null || true
watch_out=$(cat "$WORK/watch")
n=$(grep -c . <<<"$watch_out" || true)
if [ "$n" -gt 0 ] && ! grep -qi "violation\|error" <<<"$watch_out"; then
  row PASS "viewer watches acs.>" "viewer" "$n lines in 8 s"
else
  row FAIL "viewer watches acs.>" "viewer" "$(short <<<"$watch_out")"
fi
before=$(docker ps -q --filter label=acs.service=web --filter status=running | wc -l)
if out=$(as_role viewer '' scale web 0 2>&1); then
  row FAIL "acsctl scale web 0" "viewer" "accepted: $(short <<<"$out")"
else
  sleep 5
  after=$(docker ps -q --filter label=acs.service=web --filter status=running | wc -l)
  code=$(http_code "$PROXY_URL/whoami")
  if [ "$after" -ge "$before" ] && [ "$code" = 200 ] && grep -qi "permission" <<<"$out"; then
    said=$(grep -o 'Permissions Violation for [A-Za-z]* to "[^"]*"' <<<"$out" | sort -u | paste -sd ';' - | sed 's/;/; /g')
    row PASS "acsctl scale web 0" "viewer" "${said:-$(short <<<"$out")}; web still $after replica(s)"
  else
    row FAIL "acsctl scale web 0" "viewer" "before $before after $after /whoami $code: $(short <<<"$out")"
  fi
fi

say "5. replica -> NATS"
replica=$(docker ps -q --filter label=acs.worker --filter status=running | head -n1)
if [ -z "$replica" ]; then
  row FAIL "replica opens TCP to NATS" "replica" "no running replica container"
else
  rpid=$(docker inspect -f '{{.State.Pid}}' "$replica")
  rname=$(docker inspect -f '{{.Name}}' "$replica" | sed 's,^/,,')
  if nsenter -t "$rpid" -n timeout 2 bash -c "echo > /dev/tcp/$NATS_IP/4222" 2>/dev/null; then
    row FAIL "replica opens TCP to NATS" "$rname" "connected to $NATS_IP:4222"
  else
    nets=$(docker inspect -f '{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}' "$replica" | short)
    row PASS "replica opens TCP to NATS" "replica $rname" "$NATS_IP:4222 unreachable (networks: $nets)"
  fi
  if nsenter -t "$rpid" -n timeout 2 bash -c "echo > /dev/tcp/$GATEWAY/4222" 2>/dev/null; then
    row FAIL "replica opens TCP to the host's 4222" "replica $rname" "connected to $GATEWAY:4222"
  else
    row PASS "replica opens TCP to the host's 4222" "replica $rname" "$GATEWAY:4222 unreachable (acs-data is internal)"
  fi
fi
if nsenter -t "$pid" -n timeout 2 bash -c "echo > /dev/tcp/$NATS_IP/4222" 2>/dev/null; then
  row PASS "control: proxy opens TCP to NATS" "proxy" "$NATS_IP:4222 reachable on acs-control"
else
  row FAIL "control: proxy opens TCP to NATS" "proxy" "$NATS_IP:4222 unreachable"
fi

# Hand web back to its policy (a run leaves no pin behind).
operator scale web auto >/dev/null 2>&1 || say "note: acsctl scale web auto failed"

# --- the report -----------------------------------------------------------------------------
echo
printf '| %-4s | %-38s | %-22s | %s\n' result attack identity "what stopped it / what happened"
printf '|------|%s|%s|------\n' "$(printf -- '-%.0s' {1..40})" "$(printf -- '-%.0s' {1..24})"
for r in "${ROWS[@]}"; do
  IFS='|' read -r res att who why <<<"$r"
  printf '| %-4s | %-38s | %-22s | %s\n' "$res" "$att" "$who" "$why"
done
echo
if [ "$FAILED" -eq 0 ]; then
  echo "all ${#ROWS[@]} rows PASS"
else
  echo "$FAILED of ${#ROWS[@]} rows FAIL"
  exit 1
fi
