# tests/e2e/lib.sh: throwaway containers and counters for end-to-end tests.
#
# A container here is what a container runtime makes: a new mount
# namespace whose root is an overlayfs over the host's / (upper layer on a
# tmpfs, gone when the namespace ends), with /proc, /sys and /dev
# bind-mounted, entered with chroot.  The test area $T is bind-mounted at
# the same path, so the cache folder in it outlives every boot, as a volume
# does.  Nothing a boot writes elsewhere survives it.

E2E_PASSED=0
E2E_FAILED=0
E2E_NAME=${E2E_NAME:-e2e}

ok() {
  E2E_PASSED=$((E2E_PASSED + 1))
  echo "ok - $*"
}

not_ok() {
  E2E_FAILED=$((E2E_FAILED + 1))
  echo "not ok - $*"
}

# check DESCRIPTION COMMAND...: pass when the command succeeds.
check() {
  local desc=$1
  shift
  if "$@"; then ok "$desc"; else not_ok "$desc"; fi
}

finish() {
  echo "$E2E_NAME: $E2E_PASSED passed, $E2E_FAILED failed"
  [ "$E2E_FAILED" -eq 0 ]
}

# need_root: containers need root (mount namespaces, overlayfs).
need_root() {
  if [ "$(id -u)" != 0 ] || ! unshare -m true 2>/dev/null; then
    echo "$E2E_NAME needs root and mount namespaces" >&2
    not_ok "can make containers (run the tests as root)"
    finish
    exit 1
  fi
}

# boot SCRIPT: run SCRIPT with bash -e in a fresh container; its exit
# status is boot's.  $T, $CLAYER_BIN and $CLAYER_REPO are passed in.
boot() {
  # the repository is visible below / (it may be changing: other builds,
  # benchmarks); it is no part of any layer
  [ -e "$T/e2e-policy.lua" ] ||
    printf 'return { exclude = { add = { "%s" } } }\n' "$CLAYER_REPO" \
      > "$T/e2e-policy.lua"
  unshare -m --propagation private -- bash -s "$T" "$1" "$CLAYER_BIN" "$CLAYER_REPO" <<'EOS'
set -e
T=$1 script=$2 repo=$4
c=$(mktemp -d /tmp/clayer-ctr.XXXXXX)
trap 'umount -l "$c" 2>/dev/null; rmdir "$c" 2>/dev/null' EXIT
mount -t tmpfs -o size=8g,mode=0755 tmpfs "$c"
mkdir "$c/up" "$c/work" "$c/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$c/up,workdir=$c/work" \
  "$c/root"
for d in proc sys dev; do mount --rbind "/$d" "$c/root/$d"; done
# the repository may sit on another filesystem than /: bring it along
mkdir -p "$c/root$repo" "$c/root$T"
mount --bind "$repo" "$c/root$repo"
mount --bind "$T" "$c/root$T"
chroot "$c/root" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  HOME=/root T="$T" CLAYER_BIN="$3" CLAYER_REPO="$repo" LANG=C.UTF-8 \
  CLAYER_POLICY="$T/e2e-policy.lua" /bin/bash -ec "$script"
EOS
}

# serve DIR: start the test HTTP server on 127.0.0.1 for DIR; sets
# HTTP_PORT and HTTP_PID.
serve() {
  local pf="$T/http.port"
  rm -f "$pf"
  python3 "$CLAYER_REPO/tests/fixtures/httpd.py" --port 0 --port-file "$pf" \
    --root "$1" --lifetime 900 >"$T/httpd.log" 2>&1 &
  HTTP_PID=$!
  for _ in $(seq 100); do
    [ -s "$pf" ] && break
    sleep 0.05
  done
  HTTP_PORT=$(cat "$pf")
}

# new_area: a fresh test area $T, removed at exit with its server.
new_area() {
  T=$(mktemp -d /tmp/clayer-e2e.XXXXXX)
  chmod 755 "$T"
  trap 'kill ${HTTP_PID:-} 2>/dev/null; rm -rf "$T"' EXIT
}
