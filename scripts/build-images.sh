#!/usr/bin/env bash
# Builds the acs container images locally, each FROM scratch (nothing is pulled; no registry is
# needed):
#
#   acs/demo-web:dev    demo-web      (static)  user 10001, EXPOSE 8000
#   acs/vmm-worker:dev  vmm-worker    (static)  user root (Docker socket; see its Dockerfile)
#   acs/vim-brain:dev   vim-brain     (static)  user 10001, config/services.compose.toml baked in
#   acs/proxy:dev       acs-proxy     (static)  user 10001, listens on 0.0.0.0:8080
#   acs/monitor:dev     acs-monitor   (static)  user 10001, config/alarms.local.toml baked in
#   acs/nats:dev        the host's nats-server plus the two glibc files it needs, user 10001
#
# Usage: scripts/build-images.sh [--no-build] [--no-verify] [IMAGE...]
#   IMAGE        any of demo-web vmm-worker vim-brain proxy monitor nats (default: all)
#   --no-build   skip `cargo build`; use the binaries already in target/$TARGET/release
#   --no-verify  skip the smoke checks (each image runs; demo-web answers /whoami)
#
# The Rust binaries (and acsctl, for scripts/compose-demo.sh) are linked statically against
# glibc (`-C target-feature=+crt-static` with an explicit --target, so build scripts and
# proc-macros stay dynamic). Each image's build context
# is staged in a temporary directory holding only what that image needs (never the repository
# root: target/ is huge). Idempotent: unchanged inputs give the same image (the layer cache).
# The Dockerfiles live in docker/<image>/; docs/DOCKER.md explains the images.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

say() { printf 'build-images: %s\n' "$*"; }
die() { printf 'build-images: error: %s\n' "$*" >&2; exit 1; }

TARGET=${ACS_IMAGE_TARGET:-x86_64-unknown-linux-gnu}
TAG=${ACS_IMAGE_TAG:-dev}
ALL_IMAGES=(demo-web vmm-worker vim-brain proxy monitor nats)
BIN_DIR="$ROOT/target/$TARGET/release"

build=1
verify=1
images=()
for arg in "$@"; do
  case "$arg" in
    --no-build) build=0 ;;
    --no-verify) verify=0 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option $arg (see --help)" ;;
    *)
      [[ " ${ALL_IMAGES[*]} " == *" $arg "* ]] || die "unknown image $arg (one of: ${ALL_IMAGES[*]})"
      images+=("$arg") ;;
  esac
done
[ "${#images[@]}" -gt 0 ] || images=("${ALL_IMAGES[@]}")

command -v docker >/dev/null 2>&1 || die "docker not found"
docker info >/dev/null 2>&1 || die "cannot talk to the Docker engine (is it running? are you in the docker group?)"

# image -> binary (empty for nats, which uses the host's nats-server)
declare -A BIN=([demo-web]=demo-web [vmm-worker]=vmm-worker [vim-brain]=vim-brain [proxy]=acs-proxy [monitor]=acs-monitor [nats]="")

# --- the static binaries --------------------------------------------------------------------
# Always the same package set, whichever images are asked for: cargo unifies dependency features
# over the packages of one invocation, so building a subset would recompile shared dependencies
# with other features (and the next full build would recompile them back). acsctl comes along:
# scripts/compose-demo.sh uses it for load/status/watch, and it costs little on top.
pkgs=(-p demo-web -p vmm-worker -p vim-brain -p acs-proxy -p acs-monitor -p acsctl)
need_bins=0
for img in "${images[@]}"; do
  [ -n "${BIN[$img]}" ] && need_bins=1
done
if [ "$need_bins" -eq 1 ]; then
  if [ "$build" -eq 1 ]; then
    rustup target list --installed 2>/dev/null | grep -x "$TARGET" >/dev/null \
      || say "note: rust target $TARGET is not listed by rustup; cargo may fail"
    say "cargo build --release --target $TARGET ${pkgs[*]} (static; all of them, see above)"
    RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
      cargo build --release --target "$TARGET" "${pkgs[@]}"
  else
    say "--no-build: using the binaries in ${BIN_DIR#"$ROOT"/}"
  fi
fi

# A binary for a scratch image must not need a dynamic loader.
check_static() {
  local bin=$1
  [ -x "$bin" ] || die "$bin not found; run without --no-build"
  if command -v readelf >/dev/null 2>&1; then
    if readelf -l "$bin" | grep 'Requesting program interpreter' >/dev/null; then
      die "$bin is dynamically linked; build with RUSTFLAGS='-C target-feature=+crt-static' --target $TARGET"
    fi
  elif ldd "$bin" >/dev/null 2>&1; then
    die "$bin is dynamically linked; build with RUSTFLAGS='-C target-feature=+crt-static' --target $TARGET"
  fi
}

# --- staging --------------------------------------------------------------------------------
STAGE=$(mktemp -d "${TMPDIR:-/tmp}/acs-images.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT

# The common root: /etc/passwd and /etc/group (user acs = 10001) and a world-writable /tmp.
stage_rootfs() {
  local ctx=$1
  mkdir -p "$ctx/rootfs/tmp"
  chmod 1777 "$ctx/rootfs/tmp"
  cp -R "$ROOT/docker/rootfs/." "$ctx/rootfs/"
  chmod 0644 "$ctx/rootfs/etc/passwd" "$ctx/rootfs/etc/group"
}

find_nats_server() {
  local p
  p=$(command -v nats-server 2>/dev/null || true)
  [ -n "$p" ] || { [ -x /usr/sbin/nats-server ] && p=/usr/sbin/nats-server; }
  [ -n "$p" ] || die "nats-server not found (scripts/install-deps.sh installs Debian's package)"
  readlink -f "$p"
}

stage() {
  local img=$1 ctx=$2
  mkdir -p "$ctx"
  cp "$ROOT/docker/$img/Dockerfile" "$ctx/Dockerfile"
  stage_rootfs "$ctx"
  case "$img" in
    nats)
      local server lib
      server=$(find_nats_server)
      cp "$server" "$ctx/nats-server"
      # Debian builds nats-server with cgo: it needs the dynamic loader and libc (whatever else
      # ldd lists is copied too). Each file goes to the path the binary asks for, resolved from
      # symlinks, so the loader finds it without an ld.so.cache.
      mkdir -p "$ctx/lib"
      while read -r lib; do
        [ -n "$lib" ] || continue
        mkdir -p "$ctx/lib$(dirname "$lib")"
        cp -L "$lib" "$ctx/lib$lib"
      done < <(ldd "$server" | awk '/=> \//{print $3} /^[ \t]*\/[^ ]+ \(/{print $1}' | sort -u)
      [ -n "$(find "$ctx/lib" -type f)" ] || die "ldd listed no libraries for $server (is it static? then drop lib/)"
      if command -v readelf >/dev/null 2>&1; then
        lib=$(readelf -l "$server" | sed -n 's/.*program interpreter: \(.*\)]/\1/p')
        [ -z "$lib" ] || [ -f "$ctx/lib$lib" ] || die "the loader $lib of $server was not staged"
      fi
      cp "$ROOT/nats/compose.conf" "$ctx/nats.conf"
      mkdir -p "$ctx/data"
      ;;
    vim-brain)
      check_static "$BIN_DIR/vim-brain"
      cp "$BIN_DIR/vim-brain" "$ctx/"
      cp "$ROOT/config/services.compose.toml" "$ctx/services.toml"
      mkdir -p "$ctx/data"
      ;;
    monitor)
      check_static "$BIN_DIR/acs-monitor"
      cp "$BIN_DIR/acs-monitor" "$ctx/"
      cp "$ROOT/config/alarms.local.toml" "$ctx/alarms.toml"
      ;;
    vmm-worker)
      check_static "$BIN_DIR/vmm-worker"
      cp "$BIN_DIR/vmm-worker" "$ctx/"
      mkdir -p "$ctx/rootfs/var/lib/acs"
      ;;
    *)
      check_static "$BIN_DIR/${BIN[$img]}"
      cp "$BIN_DIR/${BIN[$img]}" "$ctx/"
      ;;
  esac
  # Smaller images: the release profile keeps line tables (debug = 1) for backtraces on the
  # host; the images go without.
  if [ -n "${BIN[$img]}" ] && command -v strip >/dev/null 2>&1; then
    strip --strip-debug "$ctx/${BIN[$img]}"
  fi
}

for img in "${images[@]}"; do
  ctx="$STAGE/$img"
  stage "$img" "$ctx"
  say "docker build acs/$img:$TAG (context $(du -sh "$ctx" | cut -f1))"
  # The output is shown only on failure (it holds little else than the legacy builder's
  # deprecation notice, which is expected without buildx).
  if ! out=$(docker build --quiet \
      --label org.acs.project=acs \
      --label "org.acs.component=$img" \
      -t "acs/$img:$TAG" "$ctx" 2>&1); then
    printf '%s\n' "$out" >&2
    die "docker build of acs/$img:$TAG failed"
  fi
done

# Earlier builds of these images, now untagged, are of no use: remove them (only dangling images
# with our label; nothing a container uses).
docker image prune -f --filter label=org.acs.project=acs >/dev/null || true

# --- smoke checks ---------------------------------------------------------------------------
verify_image() {
  local img=$1 ref="acs/$1:$TAG"
  case "$img" in
    # Only the binary: the baked config includes the credentials compose.yaml mounts
    # (scripts/compose-demo.sh up checks the config with them, `-t`).
    nats) docker run --rm "$ref" --version >/dev/null ;;
    vim-brain) docker run --rm "$ref" --check >/dev/null ;;
    *) docker run --rm "$ref" --help >/dev/null ;;
  esac
}

verify_demo_web() {
  local ref="acs/demo-web:$TAG" cid port body
  cid=$(docker run -d --rm --label org.acs.smoke=build-images -p 127.0.0.1::8000 "$ref")
  port=$(docker port "$cid" 8000/tcp | head -n1 | sed 's/.*://')
  body=
  for _ in $(seq 1 50); do
    body=$(curl -fsS --max-time 2 "http://127.0.0.1:$port/whoami" 2>/dev/null) && break
    sleep 0.2
  done
  docker rm -f "$cid" >/dev/null 2>&1 || true
  [ -n "$body" ] || return 1
  say "acs/demo-web:$TAG /whoami -> $body"
}

if [ "$verify" -eq 1 ]; then
  for img in "${images[@]}"; do
    verify_image "$img" || die "acs/$img:$TAG does not run (docker run --rm acs/$img:$TAG --help)"
    say "acs/$img:$TAG runs"
  done
  if [[ " ${images[*]} " == *" demo-web "* ]]; then
    if command -v curl >/dev/null 2>&1; then
      verify_demo_web || die "acs/demo-web:$TAG does not answer GET /whoami"
    else
      say "curl not found: skipping the /whoami check"
    fi
  fi
fi

echo
docker images --filter label=org.acs.project=acs --filter "reference=acs/*:$TAG" \
  --format 'table {{.Repository}}:{{.Tag}}\t{{.ID}}\t{{.Size}}'
