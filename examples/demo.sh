#!/bin/bash
# make demo: build examples/Containerfile in one fresh container, then
# restore it in another, and compare the times.  Needs root (mount
# namespaces).  The cache is build/demo/cache in this repository; nothing
# outside the repository changes.
set -eu
cd "$(dirname "$0")/.."
build=${1:-build}
export CLAYER_BIN="$PWD/$build/clayer-lua" CLAYER_REPO="$PWD"
E2E_NAME=demo
. tests/e2e/lib.sh
if [ "$(id -u)" != 0 ]; then
  echo "make demo needs root: each boot is a fresh container (a mount" >&2
  echo "namespace with an overlay of /), which only root can make." >&2
  exit 1
fi
T="$PWD/$build/demo"
rm -rf "$T"
mkdir -p "$T/cache"
cp examples/Containerfile "$T/"

echo "== boot 1: a fresh container builds the layer and publishes it"
boot '
  cd "$T"
  ln -sf "$CLAYER_BIN" /usr/local/bin/clayer
  start=$(date +%s.%N)
  clayer build Containerfile --cache "dir:$T/cache"
  end=$(date +%s.%N)
  echo "$start $end" > "$T/build.time"
'
echo
echo "== boot 2: another fresh container restores it"
boot '
  cd "$T"
  ln -sf "$CLAYER_BIN" /usr/local/bin/clayer
  command -v figlet >/dev/null && { echo "figlet is already here?"; exit 1; }
  start=$(date +%s.%N)
  clayer restore Containerfile --cache "dir:$T/cache"
  end=$(date +%s.%N)
  echo "$start $end" > "$T/restore.time"
  eval "$(clayer env)"
  figlet -f small clayer
  say "restored, not reinstalled"
  clayer restore Containerfile --cache "dir:$T/cache"
'
b=$(awk '{printf "%.1f", $2 - $1}' "$T/build.time")
r=$(awk '{printf "%.2f", $2 - $1}' "$T/restore.time")
echo
echo "build:   ${b} s  (apt-get update + install, snapshot, compress)"
echo "restore: ${r} s  (one archive, checked and unpacked)"
echo "cache:   $(du -sh "$T/cache" | cut -f1) in $T/cache"
