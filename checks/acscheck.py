#!/usr/bin/env python3
"""What the system checks (checks/*.sh) compute, in one place: the drivers stay shell scripts
that run docker, compose, nsenter and curl, and call this module for anything that parses,
times or speaks a protocol, so no check carries inline Python or awk of its own.

    acscheck.py COMMAND [ARGS...]      (python3 checks/acscheck.py --help lists them)

Only the standard library, except `nats-probe` with an nkey, which needs the `cryptography`
package to sign the server's challenge (`acscheck.py can-sign` says whether it is there).
"""
import argparse
import base64
import http.server
import json
import os
import re
import socket
import ssl
import sys
import time


# ---- time ------------------------------------------------------------------------------------

def cmd_stamp(_args):
    """Copies stdin to stdout, each line prefixed with the time it arrived (s, 3 decimals)."""
    for line in sys.stdin:
        print("%.3f %s" % (time.time(), line), end="", flush=True)


def cmd_since(args):
    """Seconds since T0 (a unix time with decimals), 2 decimals."""
    print("%.2f" % (time.time() - args.t0))


def cmd_sleep_until(args):
    """Sleeps until T0 + SECONDS (at once if that has passed)."""
    time.sleep(max(0.0, args.t0 + args.seconds - time.time()))


def cmd_le(args):
    """Exit 0 when A is a number and A <= B; a '-' (not measured) is never within."""
    try:
        ok = args.a != "-" and float(args.a) <= float(args.b)
    except ValueError:
        ok = False
    sys.exit(0 if ok else 1)


# ---- the event log (`acsctl watch --json` lines, stamped) -------------------------------------

def stamped(path):
    """(time, line) for each stamped line of the event log; unreadable lines are skipped."""
    try:
        with open(path, errors="replace") as f:
            for line in f:
                head, _, _ = line.partition(" ")
                try:
                    yield float(head), line
                except ValueError:
                    continue
    except FileNotFoundError:
        return


def cmd_detect_after(args):
    """Seconds from T0 to the first event at or after T0 matching REGEX, or '-'."""
    pattern = re.compile(args.regex)
    for t, line in stamped(args.events):
        if t >= args.t0 and pattern.search(line):
            print("%.2f" % (t - args.t0))
            return
    print("-")


def cmd_count(args):
    """How many events from T0 (for SECONDS, or to the end) match REGEX."""
    pattern = re.compile(args.regex)
    end = args.t0 + args.seconds if args.seconds is not None else float("inf")
    print(sum(1 for t, line in stamped(args.events) if args.t0 <= t <= end and pattern.search(line)))


# ---- acsctl output -----------------------------------------------------------------------------

def cmd_status(args):
    """From `acsctl status --json` on stdin: `desired` (service SERVICE's desired count) or
    `leader` (the leading brain's instance). Prints nothing when no leader answered."""
    try:
        j = json.load(sys.stdin)
    except ValueError:
        return
    if args.field == "desired":
        svc = next((s for s in j.get("services", []) if s.get("name") == args.service), {})
        print(svc.get("desired", ""))
    else:
        brain = j.get("brain") or {}
        print(brain.get("instance", "") if brain.get("leader") else "")


def cmd_load_result(args):
    """'failed total' from the last `total ...` line of an `acsctl load` report ('? ?' if none);
    skipped requests count as failed."""
    try:
        with open(args.file, errors="replace") as f:
            totals = [l for l in f if l.lstrip().startswith("total")]
    except FileNotFoundError:
        totals = []
    if not totals:
        print("? ?")
        return
    line = totals[-1]

    def field(k):
        m = re.search(r"\b%s (\d+)" % k, line)
        return int(m.group(1)) if m else 0

    ok, failed, skipped = field("ok"), field("failed"), field("skipped")
    print(failed + skipped, ok + failed + skipped)


def cmd_json_get(args):
    """The top-level field KEY of the JSON object on stdin ('' if absent or not JSON)."""
    try:
        print(json.load(sys.stdin).get(args.key, ""))
    except (ValueError, AttributeError):
        print("")


def cmd_distinct_hostnames(_args):
    """How many distinct `hostname`s the JSON lines on stdin (demo-web's /whoami) name."""
    names = set()
    for line in sys.stdin:
        line = line.strip()
        if line.startswith("{"):
            try:
                names.add(json.loads(line)["hostname"])
            except (ValueError, KeyError):
                pass
    print(len(names))


# ---- an attacker's HTTP listener ---------------------------------------------------------------

def cmd_listen(args):
    """Answers every GET with `attacker` and appends its path to HITS (until killed)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            with open(args.hits, "a") as f:
                f.write(self.path + "\n")
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"attacker\n")

        def log_message(self, *_):
            pass

    http.server.HTTPServer((args.host, args.port), Handler).serve_forever()


# ---- a raw NATS client, for attacks a well-behaved client would not make -----------------------

def cmd_can_sign(_args):
    """Exit 0 when the `cryptography` package (nkey signatures) can be imported."""
    try:
        import cryptography  # noqa: F401
    except ImportError:
        sys.exit(1)


def crc16(data):
    crc = 0
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def nkey(seed_file):
    """The signing key and the public user key of an nkey seed file."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    seed = open(seed_file).read().strip()
    raw = base64.b32decode(seed + "=" * (-len(seed) % 8))
    key = Ed25519PrivateKey.from_private_bytes(raw[2:34])
    pub = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    body = bytes([20 << 3]) + pub  # 'U': a user key
    public = base64.b32encode(body + crc16(body).to_bytes(2, "little")).decode().rstrip("=")
    return key, public


def verdict(word, why):
    print(f"{word}: {why}")
    sys.exit(0)


class Conn:
    """One NATS connection made the way TLS_MODE says: plain, noca (system roots only),
    nocert, wrong (a client certificate of another CA) or ok (the cluster's CA and STEM's
    certificate). A refusal at any step ends the run with `refused: why`."""

    def __init__(self, a):
        sock = socket.create_connection((a.host, a.port), timeout=5)
        self.sock, self.f = sock, sock.makefile("rb")
        info = json.loads(self.f.readline().decode().split(" ", 1)[1])
        if a.tls != "plain":
            ctx = ssl.create_default_context()
            if a.tls != "noca":
                ctx.load_verify_locations(os.path.join(a.tls_dir, "ca.pem"))
            cert_dir = {"ok": a.tls_dir, "noca": a.tls_dir, "wrong": a.wrong_tls_dir}.get(a.tls)
            if cert_dir:
                ctx.load_cert_chain(os.path.join(cert_dir, a.stem + ".pem"),
                                    os.path.join(cert_dir, a.stem + "-key.pem"))
            try:
                self.sock = ctx.wrap_socket(sock, server_hostname=a.host)
            except ssl.SSLError as e:
                verdict("refused", f"TLS handshake: {e.reason or e}")
            self.f = self.sock.makefile("rb")
        connect = {"verbose": False, "pedantic": False, "tls_required": a.tls != "plain",
                   "name": "acs-check", "protocol": 1, "headers": True, "no_responders": True}
        if a.nkey != "-":
            key, public = nkey(a.nkey)
            sig = key.sign(info["nonce"].encode())
            connect.update(nkey=public, sig=base64.urlsafe_b64encode(sig).decode().rstrip("="))
        self.send(f"CONNECT {json.dumps(connect)}\r\n")

    def send(self, text, payload=b""):
        try:
            self.sock.sendall(text.encode() + payload)
        except (OSError, ssl.SSLError) as e:
            verdict("refused", f"connection closed by the server ({e})")

    def line(self):
        try:
            l = self.f.readline()
        except (OSError, ssl.SSLError) as e:
            verdict("refused", f"connection closed by the server ({getattr(e, 'reason', None) or e})")
        if not l:
            verdict("refused", "connection closed by the server")
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
                    verdict("refused", l[5:])

    def pub(self, subject, payload, reply=""):
        data = payload.encode()
        self.send(f"PUB {subject} {reply} {len(data)}\r\n".replace("  ", " "), data + b"\r\n")

    def first_reply(self, seconds):
        """The body of the first message within SECONDS (answering PINGs meanwhile)."""
        deadline = time.time() + seconds
        self.sock.settimeout(seconds)
        while time.time() < deadline:
            l = self.line()
            if l.startswith("MSG") or l.startswith("HMSG"):
                parts = l.split()
                body = self.f.read(int(parts[-1]) + 2)[:-2].decode()
                if l.startswith("HMSG"):
                    body = body[int(parts[-2]):]
                return body
            if l == "PING":
                self.send("PONG\r\n")
        return None


def cmd_nats_probe(a):
    """Connects, then `hello` (nothing more), `pub SUBJECT PAYLOAD` or `request SUBJECT PAYLOAD
    INBOX`; prints one line: `accepted: ...`, `refused: ...` or `reply: BODY`."""
    conn = Conn(a)
    conn.until_pong()
    if a.action == "hello":
        verdict("accepted", "connected and answered PING")
    if a.action == "pub":
        conn.pub(a.args[0], a.args[1])
        errs = conn.until_pong()
        verdict("refused", errs[0]) if errs else verdict("accepted", f"published on {a.args[0]}")
    subject, payload, inbox = a.args
    conn.send(f"SUB {inbox}.probe 1\r\n")
    conn.pub(subject, payload, f"{inbox}.probe")
    errs = conn.until_pong()
    if errs:
        verdict("refused", errs[0])
    body = conn.first_reply(10)
    if body is None:
        verdict("refused", "no reply within 10 s")
    verdict("refused", "no responders") if not body else verdict("reply", body)


# ---- the command line --------------------------------------------------------------------------

def parser():
    p = argparse.ArgumentParser(prog="acscheck.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    def add(name, fn, *arguments):
        s = sub.add_parser(name, help=fn.__doc__.split("\n")[0])
        for names, kw in arguments:
            s.add_argument(*names, **kw)
        s.set_defaults(fn=fn)

    t0 = (["t0"], {"type": float})
    events = (["events"], {})
    add("stamp", cmd_stamp)
    add("since", cmd_since, t0)
    add("sleep-until", cmd_sleep_until, t0, (["seconds"], {"type": float}))
    add("le", cmd_le, (["a"], {}), (["b"], {}))
    add("detect-after", cmd_detect_after, events, t0, (["regex"], {}))
    add("count", cmd_count, events, (["regex"], {}), t0,
        (["seconds"], {"type": float, "nargs": "?"}))
    add("status", cmd_status, (["field"], {"choices": ["desired", "leader"]}),
        (["--service"], {"default": "web"}))
    add("load-result", cmd_load_result, (["file"], {}))
    add("json-get", cmd_json_get, (["key"], {}))
    add("distinct-hostnames", cmd_distinct_hostnames)
    add("listen", cmd_listen, (["host"], {}), (["port"], {"type": int}), (["hits"], {}))
    add("can-sign", cmd_can_sign)
    add("nats-probe", cmd_nats_probe,
        (["tls"], {"choices": ["plain", "noca", "nocert", "wrong", "ok"]}),
        (["stem"], {"help": "certificate file stem below the TLS folders"}),
        (["nkey"], {"help": "an nkey seed file, or - for none"}),
        (["action"], {"choices": ["hello", "pub", "request"]}),
        (["args"], {"nargs": "*"}),
        (["--host"], {"default": os.environ.get("NATS_HOST", "127.0.0.1")}),
        (["--port"], {"type": int, "default": int(os.environ.get("NATS_PORT", "4222"))}),
        (["--tls-dir"], {"default": os.environ.get("TLS_DIR", "")}),
        (["--wrong-tls-dir"], {"default": os.environ.get("WRONG_TLS_DIR", "")}))
    return p


def main():
    args = parser().parse_args()
    if args.command == "nats-probe" and len(args.args) != {"hello": 0, "pub": 2, "request": 3}[args.action]:
        parser().error(f"nats-probe {args.action}: wrong number of arguments")
    args.fn(args)


if __name__ == "__main__":
    main()
