#!/usr/bin/env bash
# Target P4 of docs/PERFORMANCE.md: scale-in request -> replica drained, stopped and gone, on a
# real local cluster (release build, process runtime), under steady load through the proxy.
# Prints a table of p50/p90/max for each step (drain decision, the proxy's BackendDrained event,
# stop decision, replica exited, gone) and the failed requests (must be 0).
#
#   bench/scale-in.sh [ROUNDS] [RPS]      (defaults: 20 rounds, 50 req/s)
set -euo pipefail
BENCH_TAG=scale-in
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
local_cluster_deps
cargo build --locked --release -q -p vim-brain -p vmm-worker -p acs-proxy -p demo-web -p acs-monitor -p acsctl --bins
cargo build --locked --release -q -p acsctl --example scale_in_latency
exec target/release/examples/scale_in_latency "${1:-20}" "${2:-50}"
