#!/usr/bin/env bash
# Scaling latency on a real local cluster (release build, process runtime), under steady load:
#   - manual scale request -> new replica serving through the proxy (p50/p95/max)
#   - scale-in request -> replica drained, stopped and gone
#   - failed requests through the proxy during all of it (must be 0)
#
#   bench/scale.sh [ROUNDS] [RPS]      (defaults: 20 rounds, 50 req/s)
set -euo pipefail
BENCH_TAG=scale
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
local_cluster_deps
cargo build --locked --release --workspace --bins --examples -q
exec target/release/examples/scale_latency "${1:-20}" "${2:-50}"
