#!/usr/bin/env bash
# The test suite, as CI runs it (.ci/run calls exactly this).
#
#   1. installs what the machine lacks (scripts/install-deps.sh: nats-server, cmake, wrk, nextest)
#   2. builds every binary (integration tests start the real binaries)
#   3. runs unit, integration and end-to-end tests with cargo-nextest
#
# Integration tests start their own nats-server on free loopback ports; nothing is mocked.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
export PATH="$PATH:/usr/sbin"

echo "test: building workspace binaries"
cargo build --locked --workspace --bins --examples

echo "test: running tests"
cargo nextest run --locked --workspace --no-fail-fast "$@"
