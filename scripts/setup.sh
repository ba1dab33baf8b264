#!/usr/bin/env bash
# Set everything up on a fresh Debian 12 machine (as root) and run the main job:
#   apt packages → bun (npm) → dist/pyro + dist/pyro-agent → kernel + debian:12 environment
#   → `pyro run debian:12 -- git --version` inside a real microVM.
# Every step is cached by the hash of its inputs, so a second run takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

APT_PACKAGES=(qemu-system-x86 debootstrap e2fsprogs linux-source-6.1 build-essential flex bison bc
  libelf-dev libssl-dev cpio xz-utils zstd util-linux ca-certificates docker-registry skopeo git
  busybox-static tini iproute2 nftables)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # docker-registry's package starts a system service; pyro's tests run their own instance.
  systemctl disable --now docker-registry >/dev/null 2>&1 || true
fi

# npm install (not ci): npm 11's ci rejects lock files lacking other platforms' optional
# packages (biome's). The stamp skips the step when package files did not change.
stamp=$(cat package.json package-lock.json | sha256sum | cut -d' ' -f1)
if [ ! -x node_modules/.bin/bun ] || [ "$(cat node_modules/.pyro-stamp 2>/dev/null)" != "$stamp" ]; then
  echo "setup: npm install" >&2
  npm install --no-audit --no-fund --loglevel=error
  echo "$stamp" >node_modules/.pyro-stamp
fi
export PATH="$REPO/node_modules/.bin:$PATH"

bun scripts/build.ts
# Kernel and package trees are cached by input hash outside the checkout, so fresh clones
# on the same machine (CI) reuse them; without root, inside the checkout.
if [ -z "${PYRO_BUILD_CACHE:-}" ]; then
  if [ "$(id -u)" = 0 ]; then PYRO_BUILD_CACHE=/var/cache/pyro/build; else PYRO_BUILD_CACHE=$REPO/.cache/build; fi
fi
export PYRO_BUILD_CACHE
# The chat clients' own CLIs, for the host-onramps tests that let each client read what pyro
# wrote (CI, or PYRO_TEST_CLIENTS=1): pinned versions from npm, cached by that list (~1.2 GB, ~30 s).
if [ "${CI:-}" = true ] || [ "${PYRO_TEST_CLIENTS:-}" = 1 ]; then
  clients=$(cat scripts/chat-clients.txt)
  clients_dir="$(dirname "$PYRO_BUILD_CACHE")/clients/$(echo "$clients" | sha256sum | cut -c1-16)"
  if [ ! -x "$clients_dir/node_modules/.bin/opencode" ]; then
    echo "setup: installing chat clients for the host-onramps tests" >&2
    # shellcheck disable=SC2086 # one package per word
    npm install --no-audit --no-fund --loglevel=error --prefix "$clients_dir" $clients
  fi
  ln -sfn "$clients_dir" "$(dirname "$PYRO_BUILD_CACHE")/clients/current"
fi
dist/pyro env build debian:12
# The services and cold-start real-guest tests need python3 (an http server) from
# debian:12-build: under CI build it too (cached by input hash like debian:12; the first build
# is a debootstrap of ~190 packages, a few minutes).
if [ "${CI:-}" = true ]; then dist/pyro env build debian:12-build; fi
echo "setup: done. Running the main job:" >&2
exec dist/pyro run debian:12 -- git --version
