#!/usr/bin/env bash
# The compose demo cluster (three Docker workers with capacities 2, 3, 4) under a load run:
# scales web out across the workers and back in, and prints
#   - container start-to-serving time, p50 / p95: from the worker's `starting` event (container
#     created and started) to the backend `add` that puts it into the proxy's rotation
#   - scale decision to serving, p50 / p95: from the brain's `place` decision to that `add`
#   - the failed-request count of the load run (through the proxy, 127.0.0.1:8080)
#   - how many replicas each worker ran at the peak
#
#   bench/compose-scale.sh [PEAK_RPS] [PEAK_SECONDS]     (defaults: 150 req/s for 40 s)
#
# Brings the cluster up with scripts/compose-demo.sh (building images if missing) and leaves it
# running; `scripts/compose-demo.sh down` removes it.
set -euo pipefail
BENCH_TAG=compose-scale
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
RPS=${1:-150}
SECS=${2:-40}
ACSCTL=target/release/acsctl
export NATS_URL=nats://127.0.0.1:4222

scripts/compose-demo.sh up
[ -x "$ACSCTL" ] || cargo build --locked --release -q -p acsctl
out=$(mktemp -d)
trap 'kill $watch_pid 2>/dev/null || true; rm -rf "$out"' EXIT

"$ACSCTL" watch --json > "$out/events.jsonl" 2>/dev/null &
watch_pid=$!
sleep 1

echo "== peak: $RPS req/s for ${SECS}s on / (10 ms of CPU each)"
"$ACSCTL" load http://127.0.0.1:8080/ --rps "$RPS" --duration "${SECS}s" > "$out/peak.txt" || true
"$ACSCTL" status --json > "$out/peak-status.json" || true
echo "== tail: 5 req/s for 60 s while web scales back in"
"$ACSCTL" load http://127.0.0.1:8080/ --rps 5 --duration 60s > "$out/tail.txt" || true
"$ACSCTL" status --json > "$out/end-status.json" || true
kill $watch_pid 2>/dev/null || true

python3 - "$out" <<'PY'
import json, sys, statistics
out = sys.argv[1]
place, starting, added = {}, {}, {}
for line in open(f"{out}/events.jsonl"):
    try:
        ev = json.loads(line)
    except ValueError:
        continue
    subj, p = ev.get("subject", ""), ev.get("payload")
    if not isinstance(p, dict):
        continue
    if ".events.decision." in subj and p.get("action") == "place":
        place.setdefault(p["replica"], p["ts_ms"])
    elif ".events.replica." in subj and p.get("replica", {}).get("state") == "starting":
        starting.setdefault(p["replica"]["id"], p["ts_ms"])
    elif ".backends." in subj and p.get("change") in ("add", "reset"):
        for b in p.get("backends", []):
            added.setdefault(b["id"], p["ts_ms"])

def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round((len(xs) - 1) * q))]

def show(name, pairs):
    xs = [b - a for a, b in pairs if b >= a]
    if xs:
        print(f"{name:<44} n={len(xs):<3} p50 {pct(xs, .5):>5} ms   p95 {pct(xs, .95):>5} ms   max {max(xs):>5} ms")
    else:
        print(f"{name:<44} no samples")

show("container start -> serving (in rotation)", [(starting[r], added[r]) for r in starting if r in added])
show("place decision -> serving", [(place[r], added[r]) for r in place if r in added])
peak = json.load(open(f"{out}/peak-status.json"))
per = {}
for s in peak.get("services", []):
    for r in s.get("replicas", []):
        per[r["worker"]] = per.get(r["worker"], 0) + 1
caps = {w["id"]: w["max_replicas"] for w in peak.get("workers", [])}
print("replicas per worker at the peak:", ", ".join(f"{w} {n}/{caps.get(w, '?')}" for w, n in sorted(per.items())))
end = json.load(open(f"{out}/end-status.json"))
for s in end.get("services", []):
    print(f"after the tail: {s['name']} desired {s['desired']} running {s['running']}")
PY
echo "== load results (failed = non-2xx or transport errors through the proxy)"
tail -n 1 "$out/peak.txt"
tail -n 1 "$out/tail.txt"
