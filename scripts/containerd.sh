#!/usr/bin/env bash
# Makes containerd (Debian's `containerd` package, 1.6.x) available to the end-to-end tests WITHOUT
# installing it as a system service: the .deb is fetched with `apt-get download` into a cache folder
# and unpacked with `dpkg -x` into $ROOT/.tools/containerd. Nothing is started, no unit is enabled,
# /var/lib/containerd and /run/containerd are never touched.
#
# Idempotent: does nothing when containerd and ctr are already unpacked.
# Prints the bin folder as its last line on stdout:  BIN=$(scripts/containerd.sh | tail -1)
#
# Only `containerd` and `ctr` are needed to pull and unpack images: unpacking applies the tars in
# Go into the `native` (or `overlayfs`) snapshotter, bind-mounting each snapshot, so it needs root
# but no other binary. `runc` and the CNI plugins are needed only to *run* containers, which the
# tests never do, so they are not fetched (the .deb's dependency on runc is not installed).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$ROOT/.tools/containerd"
BIN="$DEST/usr/bin"
CACHE="$ROOT/.tools/cache/apt"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

if [ -x "$BIN/containerd" ] && [ -x "$BIN/ctr" ]; then
  echo "$BIN"
  exit 0
fi

mkdir -p "$CACHE"
deb() { find "$CACHE" -maxdepth 1 -name 'containerd_*.deb' | sort | tail -1; }
# As root, apt drops to the `_apt` user to download and warns that it cannot write to $CACHE.
apt_opts=(-qq)
[ "$(id -u)" -ne 0 ] || apt_opts+=(-o APT::Sandbox::User=root)

if [ -z "$(deb)" ]; then
  say "apt-get download containerd"
  # apt-get download writes into the current directory. Refresh the package lists only if the
  # first attempt fails (a fresh machine has none, or they point at a version no longer served).
  if ! (cd "$CACHE" && apt-get download "${apt_opts[@]}" containerd >&2); then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    say "apt-get update"
    $sudo apt-get update -qq >&2
    (cd "$CACHE" && apt-get download "${apt_opts[@]}" containerd >&2)
  fi
fi

pkg="$(deb)"
[ -n "$pkg" ] || { echo "containerd.sh: no containerd .deb in $CACHE" >&2; exit 1; }

say "dpkg -x $(basename "$pkg")"
# Unpack into a scratch folder first, so an interrupted run never leaves a half-unpacked tree
# that the idempotence check above would accept.
tmp="$(mktemp -d "$ROOT/.tools/containerd.tmp.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
dpkg -x "$pkg" "$tmp"
[ -x "$tmp/usr/bin/containerd" ] && [ -x "$tmp/usr/bin/ctr" ] \
  || { echo "containerd.sh: $pkg has no usr/bin/containerd or usr/bin/ctr" >&2; exit 1; }
rm -rf "$DEST"
mv "$tmp" "$DEST"
trap - EXIT

"$BIN/containerd" --version >&2
echo "$BIN"
