#!/usr/bin/env bash
# Makes `s3s-fs` 0.14.1 available to the end-to-end tests: a small S3 server over a folder (each
# top-level folder is a bucket) that really checks SigV4 signatures, presigned URLs included
# (tampered signature, wrong secret, expiry → 403; Range → 206). s3rver and moto do not check them.
#
#   cargo install --locked s3s-fs@0.14.1 --features binary
#
# into cargo's default bin folder ($CARGO_INSTALL_ROOT/bin, else $CARGO_HOME/bin, else ~/.cargo/bin).
# Idempotent: does nothing when `cargo install --list` already records s3s-fs v0.14.1 there and the
# binary exists. Cold install: ~2.5 min on 2 cores (169 crates; measured 149 s with a warm crates.io index).
# Today --locked works (cargo only warns that the locked `spin v0.10.0` is yanked).
# Prints the binary's absolute path as its last line on stdout:  S3S_FS=$(scripts/s3s-fs.sh | tail -1)
set -euo pipefail

VERSION=0.14.1
CRATE=s3s-fs

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
command -v cargo >/dev/null || { echo "s3s-fs.sh: cargo not found (install Rust with rustup)" >&2; exit 1; }

ROOT_DIR="${CARGO_INSTALL_ROOT:-${CARGO_HOME:-$HOME/.cargo}}"
BIN="$ROOT_DIR/bin/$CRATE"

installed() {
  [ -x "$BIN" ] || return 1
  local list
  list="$(cargo install --list --root "$ROOT_DIR" 2>/dev/null)" || return 1
  grep -q "^$CRATE v${VERSION//./\\.}:" <<<"$list"
}

if ! installed; then
  say "cargo install --locked $CRATE@$VERSION --features binary (one-time, several minutes)"
  log="$(mktemp)"
  trap 'rm -f "$log"' EXIT
  # cargo's progress goes to stderr; keep a copy to tell why --locked failed.
  set +e
  cargo install --locked "$CRATE@$VERSION" --features binary --root "$ROOT_DIR" --force 2>&1 >&2 | tee "$log" >&2
  rc=${PIPESTATUS[0]}
  set -e
  if [ "$rc" -ne 0 ]; then
    # --locked uses the crate's published Cargo.lock. If a crate version pinned there can no longer
    # be fetched from the registry (removed or yanked so that resolution fails), retry WITHOUT
    # --locked: cargo then resolves the newest semver-compatible versions instead. (A network failure
    # also says "failed to download"; its retry just fails the same way.) Other failures, such as a
    # compile error, are not retried.
    if grep -Eqi 'failed to select a version|no matching package|failed to download|could not find .* in registry|failed to get .* as a dependency' "$log"; then
      say "a locked dependency is unavailable; retrying without --locked"
      cargo install "$CRATE@$VERSION" --features binary --root "$ROOT_DIR" --force >&2
    else
      echo "s3s-fs.sh: cargo install $CRATE@$VERSION failed" >&2
      exit 1
    fi
  fi
  installed || { echo "s3s-fs.sh: $BIN missing after cargo install" >&2; exit 1; }
fi

echo "$BIN"
