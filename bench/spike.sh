#!/usr/bin/env bash
# Target P5 of docs/PERFORMANCE.md: a load spike (10 -> 200 req/s, open loop, through the proxy)
# -> the brain's first scale decision -> a new replica serving, on a real local cluster (release
# build). `web` has target_rps_per_replica = 50 and starts each round at 1 replica. Prints a
# table of p50/p90/max, in ms after the step, of: the decision, the new replica's `healthy`
# event, its backend `add` on the proxies' subject, and its first answer to GET /whoami through
# the proxy; then the failed requests.
#
#   bench/spike.sh [ROUNDS] [RUNTIMES]     (defaults: 5 rounds, "process docker")
#   IMAGE=acs/demo-web:dev                 (Docker runtime: a local demo-web image)
set -euo pipefail
BENCH_TAG=spike
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
local_cluster_deps
ROUNDS="${1:-${ROUNDS:-5}}"
RUNTIMES="${2:-${RUNTIMES:-process docker}}"
IMAGE="${IMAGE:-acs/demo-web:dev}"
cargo build --locked --release -q -p vim-brain -p vmm-worker -p acs-proxy -p demo-web -p acs-monitor -p acsctl --bins
cargo build --locked --release -q -p acsctl --example spike_latency
for rt in $RUNTIMES; do
    if [ "$rt" = docker ] && ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
        echo "docker: image $IMAGE not found (build it with scripts/build-images.sh); skipped" >&2
        continue
    fi
    target/release/examples/spike_latency "$ROUNDS" "$rt" "$IMAGE"
done
