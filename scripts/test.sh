#!/usr/bin/env bash
# The test suite, as CI runs it (.ci/run calls exactly this).
#
#   1. installs what testing needs and the machine lacks (`scripts/install-deps.sh --list test`)
#   2. checks that a Docker engine answers: the Docker tests fail without one, so this stops
#      early and says so, unless ACS_SKIP_DOCKER_TESTS=1 filters them out (reported as skipped)
#   3. gates: `cargo fmt --check`, `cargo clippy -D warnings`, `cargo doc` with no warnings
#   4. builds every binary (integration tests start the real binaries)
#   5. runs unit, integration and end-to-end tests with cargo-nextest
#
# What is real and what is faked: the README's "Tests" section.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh test
export PATH="$PATH:/usr/sbin"

# The tests that need a Docker engine, as a nextest filterset (see .config/nextest.toml).
docker_tests='(binary_id(vmm-worker::it) & test(/^docker::/)) | (binary_id(acsctl::it) & test(/^docker_e2e::/))'
skip_docker=()
if [[ "${ACS_SKIP_DOCKER_TESTS:-}" == 1 ]]; then
  # Filtered out, so nextest counts them as skipped. nextest unions several -E filtersets, so
  # a caller's own -E would bring them back: select by name after `--` instead.
  skip_docker=(-E "not (${docker_tests})")
  echo "test: ACS_SKIP_DOCKER_TESTS=1: the Docker tests are SKIPPED (nextest counts them as skipped)"
elif version=$(docker info --format '{{.ServerVersion}}' 2>&1); then
  echo "test: Docker engine ${version} answers; the Docker tests run against it"
else
  echo "test: no Docker engine answers \`docker info\`:" >&2
  grep -v '^$' <<<"${version}" | sed 's/^/test:   /' >&2
  echo "test: the Docker tests need one. Start Docker (or point DOCKER_HOST at an engine)," >&2
  echo "test: or run ACS_SKIP_DOCKER_TESTS=1 ./scripts/test.sh to skip the Docker tests." >&2
  exit 1
fi

# A one-off build gains nothing from incremental state, which cargo writes to target/ for
# every workspace crate (the CI machine's disk ran out once). Export CARGO_INCREMENTAL=1 to keep
# it for repeated local runs.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
target_dir="${CARGO_TARGET_DIR:-target}"
mkdir -p "$target_dir"
echo "test: disk free for ${target_dir}: $(df -h --output=avail "$target_dir" | tail -1 | tr -d ' ') (a fresh build, gates and test run leave about 2.5 GB, measured 2026-12-07)"

# Gates before anything runs: formatting, lints (warnings are errors) and the docs.
for tool in fmt clippy; do
  if ! cargo "$tool" --version >/dev/null 2>&1; then
    echo "test: cargo $tool is missing; adding the rustup component"
    rustup component add "$([[ $tool == fmt ]] && echo rustfmt || echo clippy)"
  fi
done
echo "test: cargo fmt --check"
cargo fmt --all --check
echo "test: cargo clippy (warnings are errors)"
cargo clippy --locked --workspace --all-targets -- -D warnings
echo "test: cargo doc (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --locked --workspace --no-deps

echo "test: building workspace binaries"
cargo build --locked --workspace --bins --examples

echo "test: running tests"
status=0
cargo nextest run --locked --workspace --no-fail-fast "${skip_docker[@]}" "$@" || status=$?
echo "test: ${target_dir} now holds $(du -sh "$target_dir" 2>/dev/null | cut -f1)"
exit "$status"
