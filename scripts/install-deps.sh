#!/usr/bin/env bash
# Installs what building and testing acs needs and this machine lacks. Idempotent: run it as
# often as you like; it changes nothing when everything is there.
#
#   Debian packages: nats-server, cmake, wrk, pkg-config   (apt-get; sudo only when not root)
#                    python3-aiosmtpd                      (the monitor's alarm e-mail tests)
#                    prometheus                            (tests/prometheus.rs scrapes a local cluster)
#                    chromium, chromium-driver             (tests/dashboard.rs, the web dashboard)
#   cargo-nextest                                           (cargo install --locked)
#
# Prints what it found and what it did.
set -euo pipefail

say() { printf 'install-deps: %s\n' "$*"; }

# command -> Debian package
declare -A PKG_FOR=(
  [nats-server]=nats-server
  [cmake]=cmake
  [wrk]=wrk
  [pkg-config]=pkg-config
  [prometheus]=prometheus
  # The dashboard test (crates/acsctl/tests/dashboard.rs) drives real headless Chromium.
  [chromium]=chromium
  [chromedriver]=chromium-driver
)

have() {
  command -v "$1" >/dev/null 2>&1 && return 0
  # Debian puts nats-server in /usr/sbin, which is not on every user's PATH.
  [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]
}

if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1; then
  SUDO=(sudo)
else
  SUDO=()
fi

missing=()
for cmd in nats-server cmake wrk pkg-config prometheus chromium chromedriver; do
  if have "$cmd"; then
    say "$cmd: present"
  else
    say "$cmd: missing"
    missing+=("${PKG_FOR[$cmd]}")
  fi
done

# Python modules -> Debian package. The monitor's alarm tests run a real SMTP server
# (`/usr/bin/python3 -m aiosmtpd`, Debian's python3 rather than a pyenv one).
if /usr/bin/python3 -c 'import aiosmtpd' >/dev/null 2>&1; then
  say "python3-aiosmtpd: present"
else
  say "python3-aiosmtpd: missing"
  missing+=(python3-aiosmtpd)
fi

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
  for cmd in nats-server cmake wrk pkg-config prometheus chromium chromedriver; do
    have "$cmd" || { say "$cmd still missing after install"; exit 1; }
  done
  say "installed: ${missing[*]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
  say "cargo not found; install a Rust toolchain (rustup) first"
  exit 1
fi
if cargo nextest --version >/dev/null 2>&1; then
  say "cargo-nextest: present ($(cargo nextest --version 2>/dev/null | head -n1))"
else
  say "cargo-nextest: missing; cargo install cargo-nextest --locked"
  cargo install cargo-nextest --locked
  say "installed: cargo-nextest"
fi

say "done"
