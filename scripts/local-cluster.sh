#!/usr/bin/env bash
# Runs a local Auto Cloud Scaler cluster on this machine: nats-server, vim-brain, two
# vmm-workers (process runtime), the Pingora proxy on 127.0.0.1:8080, and the demo service
# `web`. Ctrl-C stops everything. Extra arguments go to `acsctl up` (see `acsctl up --help`).
# Installs only what running needs (`scripts/install-deps.sh --list run`): no test tools.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh run
export PATH="$PATH:/usr/sbin"

echo "local-cluster: building (release)"
cargo build --locked --release --workspace --bins

exec target/release/acsctl up "$@"
