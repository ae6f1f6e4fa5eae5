# Shared by scripts/dev, scripts/test, scripts/build: idempotent installs of everything the project
# needs on a fresh machine (each step skips what is already there at the right version).
# Sourced, not run.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PATH="$ROOT/node_modules/.bin:$HOME/.cargo/bin:$PATH"
export WRANGLER_SEND_METRICS=false

WORKER_BUILD_VERSION=0.8.7

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# Debian packages, installed only if missing. apt-get update runs at most once per call.
ensure_apt() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  say "apt-get install ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  # Packages that ship a service (docker.io, containerd) must not start it: the tests run private
  # daemons of their own. policy-rc.d answering 101 tells invoke-rc.d "not now" (most containers
  # already have one; a machine without it gets one only for this install).
  local policy=/usr/sbin/policy-rc.d made_policy="" rc=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
    $sudo chmod 755 "$policy"
    made_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || rc=$?
  [ -z "$made_policy" ] || $sudo rm -f "$policy"
  return "$rc"
}

ensure_wasm_target() {
  rustup target list --installed | grep -qx wasm32-unknown-unknown && return 0
  say "rustup target add wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown
}

# cargo install NAME at VERSION unless BIN --version already says VERSION.
ensure_cargo_bin() {
  local crate=$1 version=$2 bin=$3
  shift 3
  if command -v "$bin" >/dev/null && "$bin" --version 2>/dev/null | grep -Eq "(^| )v?${version//./\\.}( |$)"; then
    return 0
  fi
  say "cargo install $crate@$version (one-time, several minutes)"
  cargo install "$crate" --version "$version" --force "$@"
}

# The wasm-bindgen CLI must equal the wasm-bindgen crate in Cargo.lock.
wasm_bindgen_version() {
  awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' "$ROOT/Cargo.lock"
}

# Node 22, wrangler, miniflare, esbuild, binaryen: pinned in package-lock.json, reinstalled when it
# changes.
ensure_node_modules() {
  local stamp="$ROOT/node_modules/.frontdoor-lock-sha"
  local want
  want=$(sha256sum "$ROOT/package-lock.json" | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$ROOT/node_modules/.bin/node" ]; then
    return 0
  fi
  command -v npm >/dev/null || ensure_apt nodejs npm
  say "npm ci (Node 22, wrangler, miniflare, esbuild)"
  (cd "$ROOT" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$want" >"$stamp"
}

ensure_build_tools() {
  ensure_wasm_target
  ensure_cargo_bin worker-build "$WORKER_BUILD_VERSION" worker-build --locked
  # Not --locked: wasm-bindgen-cli's lockfile pins a crate version the registry no longer serves.
  ensure_cargo_bin wasm-bindgen-cli "$(wasm_bindgen_version)" wasm-bindgen
  # The same install ships the runner of the wasm-bindgen-test tier (src/glue/tests.rs).
  ensure_cargo_bin wasm-bindgen-cli "$(wasm_bindgen_version)" wasm-bindgen-test-runner
  ensure_node_modules
}

# worker-build normally downloads wasm-bindgen, esbuild and wasm-opt from GitHub; hand it local
# ones instead (wasm-opt is binaryen 132 from npm, the version worker-build expects; its flags are
# in Cargo.toml's [package.metadata.wasm-pack.profile.release]).
build_worker() {
  say "worker-build --release (wasm-opt -Oz)"
  WASM_BINDGEN_BIN="$HOME/.cargo/bin/wasm-bindgen" ESBUILD_BIN="$ROOT/node_modules/.bin/esbuild" \
    WASM_OPT_BIN="$ROOT/node_modules/.bin/wasm-opt" worker-build --release
}
