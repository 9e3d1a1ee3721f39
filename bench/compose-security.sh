#!/usr/bin/env bash
# compose-security.sh — the attacks of issue 7, tried for real against the compose demo cluster.
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
# Usage: bench/compose-security.sh [--keep]
#   Uses the running compose cluster if there is one (and leaves it running); otherwise starts
#   it with `scripts/compose-demo.sh up` and removes it at the end (`--keep` keeps it).
#   Exit status 0 when every row passes.
#
# Needs: what scripts/compose-demo.sh needs, root (nsenter, and the copies of the credentials),
# python3 with the `cryptography` package (a raw NATS client that signs the nkey challenge),
# curl. CI does not run it (no Docker engine there); docs/DOCKER.md shows a run.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

say() { printf 'compose-security: %s\n' "$*" >&2; }
die() { printf 'compose-security: error: %s\n' "$*" >&2; exit 1; }

KEEP=0
for a in "$@"; do
  case "$a" in
    --keep) KEEP=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $a (see --help)" ;;
  esac
done

AUTH=.acs/compose/auth
PROXY_URL=http://127.0.0.1:8080
NATS_HOST=127.0.0.1
NATS_PORT=4222
DEMO=scripts/compose-demo.sh
export COMPOSE_PROJECT_NAME=${COMPOSE_PROJECT_NAME:-acs}

[ "$(id -u)" -eq 0 ] || die "run as root (nsenter into container network namespaces)"
command -v python3 >/dev/null 2>&1 || die "python3 not found"
python3 -c 'import cryptography' 2>/dev/null || die "python3 lacks the cryptography package (pip install cryptography)"
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
if nats_running && [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$PROXY_URL/whoami" || true)" = 200 ]; then
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
# probe.py TLS NKEY ACTION [ARGS]: TLS is plain|noca|nocert|wrong|ok (ok: the cluster's CA and
# the client certificate CERT_STEM), NKEY a seed file or `-`. Prints one line, `refused: ...`
# or `accepted: ...`.
cat >"$WORK/probe.py" <<'EOF'
import base64, json, os, socket, ssl, sys, time
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives import serialization

host, port = os.environ["NATS_HOST"], int(os.environ["NATS_PORT"])
tls_dir, wrong_dir = os.environ["TLS_DIR"], os.environ["WRONG_TLS_DIR"]
tls_mode, stem, nkey_file, action, args = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]

def crc16(data):
    crc = 0
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc

def nkey(seed_file):
    seed = open(seed_file).read().strip()
    raw = base64.b32decode(seed + "=" * (-len(seed) % 8))
    key = Ed25519PrivateKey.from_private_bytes(raw[2:34])
    pub = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    body = bytes([20 << 3]) + pub  # 'U': a user key
    public = base64.b32encode(body + crc16(body).to_bytes(2, "little")).decode().rstrip("=")
    return key, public

def out(verdict, why):
    print(f"{verdict}: {why}")
    sys.exit(0)

class Conn:
    def __init__(self):
        sock = socket.create_connection((host, port), timeout=5)
        self.f = sock.makefile("rb")
        info = json.loads(self.f.readline().decode().split(" ", 1)[1])
        self.sock = sock
        if tls_mode != "plain":
            ctx = ssl.create_default_context()
            if tls_mode != "noca":
                ctx.load_verify_locations(os.path.join(tls_dir, "ca.pem"))
            if tls_mode in ("ok", "noca"):
                ctx.load_cert_chain(os.path.join(tls_dir, stem + ".pem"), os.path.join(tls_dir, stem + "-key.pem"))
            elif tls_mode == "wrong":
                ctx.load_cert_chain(os.path.join(wrong_dir, stem + ".pem"), os.path.join(wrong_dir, stem + "-key.pem"))
            try:
                self.sock = ctx.wrap_socket(sock, server_hostname=host)
            except ssl.SSLError as e:
                out("refused", f"TLS handshake: {e.reason or e}")
            self.f = self.sock.makefile("rb")
        connect = {"verbose": False, "pedantic": False, "tls_required": tls_mode != "plain",
                   "name": "compose-security", "protocol": 1, "headers": True, "no_responders": True}
        if nkey_file != "-":
            key, public = nkey(nkey_file)
            sig = key.sign(info["nonce"].encode())
            connect.update(nkey=public, sig=base64.urlsafe_b64encode(sig).decode().rstrip("="))
        self.send(f"CONNECT {json.dumps(connect)}\r\n")

    def send(self, text, payload=b""):
        try:
            self.sock.sendall(text.encode() + payload)
        except (OSError, ssl.SSLError) as e:
            out("refused", f"connection closed by the server ({e})")

    def line(self):
        try:
            l = self.f.readline()
        except (OSError, ssl.SSLError) as e:
            out("refused", f"connection closed by the server ({getattr(e, 'reason', None) or e})")
        if not l:
            out("refused", "connection closed by the server")
        return l.decode().strip()

    def until_pong(self):
        """PING, then the server's errors up to its PONG; a fatal -ERR ends the run."""
        self.send("PING\r\n")
        errors = []
        while True:
            l = self.line()
            if l == "PONG":
                return errors
            if l.startswith("-ERR"):
                errors.append(l[5:])
                if "Permissions Violation" not in l:
                    out("refused", l[5:])

    def pub(self, subject, payload, reply=""):
        data = payload.encode()
        self.send(f"PUB {subject} {reply} {len(data)}\r\n".replace("  ", " "), data + b"\r\n")

conn = Conn()
errs = conn.until_pong()
if action == "hello":
    out("accepted", "connected and answered PING")
elif action == "pub":
    conn.pub(args[0], args[1])
    errs = conn.until_pong()
    out("refused", errs[0]) if errs else out("accepted", f"published on {args[0]}")
elif action == "request":
    subject, payload, inbox = args
    conn.send(f"SUB {inbox}.probe 1\r\n")
    conn.pub(subject, payload, f"{inbox}.probe")
    errs = conn.until_pong()
    if errs:
        out("refused", errs[0])
    deadline = time.time() + 10
    conn.sock.settimeout(10)
    while time.time() < deadline:
        l = conn.line()
        if l.startswith("MSG") or l.startswith("HMSG"):
            parts = l.split()
            body = conn.f.read(int(parts[-1]) + 2)[:-2].decode()
            if l.startswith("HMSG"):
                body = body[int(parts[-2]):]
            if not body:
                out("refused", "no responders")
            out("reply", body)
        if l == "PING":
            conn.send("PONG\r\n")
    out("refused", "no reply within 10 s")
EOF

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
  NATS_HOST=$NATS_HOST NATS_PORT=$NATS_PORT TLS_DIR="$AUTH/tls" WRONG_TLS_DIR="$WORK/foreign/tls" \
    python3 "$WORK/probe.py" "$@" 2>&1 | tail -n1
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
  reply:*'"ok":false'*) row PASS "start acs/nats:dev on acs.cmd.worker.w3" "brain (leaked)" "w3's allow-list: $(sed 's/^reply: //' <<<"$r" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("error",""))' | short)" ;;
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
python3 - "$GATEWAY" "$WORK/hits" <<'EOF' &
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        open(sys.argv[2], "a").write(self.path + "\n")
        self.send_response(200); self.end_headers(); self.wfile.write(b"attacker\n")
    def log_message(self, *a): pass
http.server.HTTPServer((sys.argv[1], 18099), H).serve_forever()
EOF
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
    seen=$(for _ in $(seq 1 12); do curl -s --max-time 2 "$PROXY_URL/whoami"; echo; done | python3 -c '
import json, sys
print(len({json.loads(l)["hostname"] for l in sys.stdin if l.strip().startswith("{")}))')
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
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$PROXY_URL/whoami" || true)
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
