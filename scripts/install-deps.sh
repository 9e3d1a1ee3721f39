#!/usr/bin/env bash
# Installs what this machine lacks to build and run acs (profile `run`) or also to test it
# (profile `test`). Idempotent: it changes nothing when everything is there.
#
#   scripts/install-deps.sh run      # scripts/local-cluster.sh
#   scripts/install-deps.sh test     # scripts/test.sh (and CI)
#   scripts/install-deps.sh --list test   # print the package list and exit
#
#   run:  Debian nats-server, cmake, pkg-config
#   test: run's, plus Debian wrk, prometheus, chromium, chromium-driver, python3-aiosmtpd,
#         and cargo-nextest (cargo install --locked)
#
# apt-get runs through sudo only when not root. Debian's prometheus package starts a daemon on
# :9090; the tests start their own prometheus, so that daemon is stopped and disabled.
set -euo pipefail

say() { printf 'install-deps: %s\n' "$*"; }
usage() { echo "usage: $0 [--list] run|test" >&2; exit 2; }

list_only=0
if [[ "${1:-}" == --list ]]; then
  list_only=1
  shift
fi
profile=${1:-}
[[ $profile == run || $profile == test ]] || usage

# Debian package -> a command it installs (or, for a Python module, `python3:<module>`).
declare -A PROBE=(
  [nats-server]=nats-server
  [cmake]=cmake
  [pkg-config]=pkg-config
  # Load generation in the benches and the proxy tests.
  [wrk]=wrk
  # crates/acsctl/tests/it/prometheus.rs scrapes a local cluster with a prometheus it starts itself.
  [prometheus]=prometheus
  # crates/acsctl/tests/it/dashboard.rs drives real headless Chromium.
  [chromium]=chromium
  [chromium-driver]=chromedriver
  # The monitor's alarm e-mail tests run a real SMTP server (`/usr/bin/python3 -m aiosmtpd`).
  [python3-aiosmtpd]=python3:aiosmtpd
)
RUN_PKGS=(nats-server cmake pkg-config)
TEST_PKGS=("${RUN_PKGS[@]}" wrk prometheus chromium chromium-driver python3-aiosmtpd)
if [[ $profile == run ]]; then
  pkgs=("${RUN_PKGS[@]}")
  cargo_tools=()
else
  pkgs=("${TEST_PKGS[@]}")
  cargo_tools=(cargo-nextest)
fi

say "profile $profile: Debian ${pkgs[*]}${cargo_tools:+; cargo ${cargo_tools[*]}}"
[[ $list_only == 1 ]] && exit 0

present() {
  local probe=${PROBE[$1]}
  if [[ $probe == python3:* ]]; then
    /usr/bin/python3 -c "import ${probe#python3:}" >/dev/null 2>&1
    return
  fi
  command -v "$probe" >/dev/null 2>&1 && return 0
  # Debian puts nats-server in /usr/sbin, which is not on every user's PATH.
  [ -x "/usr/sbin/$probe" ] || [ -x "/sbin/$probe" ]
}

if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1; then
  SUDO=(sudo)
else
  SUDO=()
fi

missing=()
for pkg in "${pkgs[@]}"; do
  if present "$pkg"; then
    say "$pkg: present"
  else
    say "$pkg: missing"
    missing+=("$pkg")
  fi
done

if [ "${#missing[@]}" -gt 0 ]; then
  if ! command -v apt-get >/dev/null 2>&1; then
    say "apt-get not found; install these yourself: ${missing[*]}"
    exit 1
  fi
  if [ "$(id -u)" -ne 0 ] && [ "${#SUDO[@]}" -eq 0 ]; then
    say "not root and no sudo; install these yourself: ${missing[*]}"
    exit 1
  fi
  say "apt-get update"
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  say "apt-get install ${missing[*]}"
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  for pkg in "${missing[@]}"; do
    present "$pkg" || { say "$pkg still missing after install"; exit 1; }
  done
  say "installed: ${missing[*]}"
fi

# The package's daemon would hold :9090 and scrape nothing of ours.
if [[ " ${missing[*]} " == *" prometheus "* ]]; then
  if command -v systemctl >/dev/null 2>&1 && systemctl is-system-running >/dev/null 2>&1; then
    "${SUDO[@]}" systemctl disable --now prometheus >/dev/null 2>&1 || true
  elif [ -x /etc/init.d/prometheus ]; then
    "${SUDO[@]}" /etc/init.d/prometheus stop >/dev/null 2>&1 || true
    "${SUDO[@]}" update-rc.d prometheus disable >/dev/null 2>&1 || true
  fi
  say "prometheus: the Debian daemon is stopped and disabled (tests start their own)"
fi

if ! command -v cargo >/dev/null 2>&1; then
  say "cargo not found; install a Rust toolchain (rustup) first"
  exit 1
fi
for tool in "${cargo_tools[@]}"; do
  sub=${tool#cargo-}
  if cargo "$sub" --version >/dev/null 2>&1; then
    say "$tool: present ($(cargo "$sub" --version 2>/dev/null | head -n1))"
  else
    say "$tool: missing; cargo install $tool --locked"
    cargo install "$tool" --locked
    say "installed: $tool"
  fi
done

say "done"
