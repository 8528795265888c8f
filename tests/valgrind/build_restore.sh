#!/bin/bash
# tests/valgrind/build_restore.sh: one `clayer build` of a small
# Containerfile below a --root onto a dir: cache, then one `clayer
# restore` of it into a fresh --root, each under valgrind's memcheck
# (issue #7).  A definite or indirect leak, or any memory error, fails;
# so does a restore that does not give the built tree.  valgrind 3.19
# answers ENOSYS to openat2, so the restore runs on the userspace walk
# (src/tar_resolve.c).  Ends with "valgrind: N passed, N failed".
set -u
cd "$(dirname "$0")/../.."
bin=${CLAYER_BIN:-$PWD/build/clayer-lua}
link=${bin%clayer-lua}clayer
passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok - $*"; }
not_ok() { failed=$((failed + 1)); echo "not ok - $*"; }
finish() {
  echo "valgrind: $passed passed, $failed failed"
  [ "$failed" -eq 0 ]
  exit
}

if ! command -v valgrind >/dev/null; then
  not_ok "valgrind is installed (Debian: valgrind; make deps)"
  finish
fi
if ldd "$bin" 2>/dev/null | grep -q libasan; then
  # memcheck cannot run an AddressSanitizer build, which checks itself
  echo "valgrind: skipped: $bin is an ASan build"
  finish
fi

T=$(mktemp -d /tmp/clayer-valgrind.XXXXXX)
trap 'rm -rf "$T"' EXIT

# A tiny root with /bin/sh and a few tools, so RUN runs chrooted in it.
base=$T/base
mkdir -p "$base/etc" "$base/tmp" "$base/var/lib" "$T/ctx"
for t in /bin/sh /bin/mkdir /bin/ln /bin/chmod /bin/echo /bin/rm; do
  mkdir -p "$base$(dirname $t)"
  cp -L "$t" "$base$t"
  for lib in $(ldd "$t" | grep -o '/[^ ]*'); do
    cp -L --parents "$lib" "$base"
  done
done
cp /etc/os-release "$base/etc/"
echo gone > "$base/etc/gone"
cp -a "$base" "$T/r1"
cp -a "$base" "$T/r2"
printf 'copied\n' > "$T/ctx/data.txt"
cat > "$T/ctx/Containerfile" <<'CF'
ENV A="x y"
WORKDIR /opt/app
COPY data.txt ./
RUN echo new > /etc/new && ln -s /etc/new /opt/app/link \
 && mkdir -p /opt/app/d/e && chmod 0750 /opt/app/data.txt && rm /etc/gone
CF

# memcheck NAME ARGS...: run the CLI under valgrind in the context
# folder; the log goes to $T/NAME.log.
memcheck() {
  local name=$1
  shift
  (cd "$T/ctx" && valgrind -q --leak-check=full \
     --errors-for-leak-kinds=definite,indirect --error-exitcode=99 \
     "$link" "$@" --cache "dir:$T/cache") > "$T/$name.log" 2>&1
  local code=$?
  case $code in
    0) ok "clayer $name under valgrind: no leak, no memory error" ;;
    99) not_ok "clayer $name: valgrind found leaks or memory errors"
        cat "$T/$name.log" ;;
    *) not_ok "clayer $name failed under valgrind (exit $code)"
       cat "$T/$name.log" ;;
  esac
}

listing() {
  (cd "$1" && find . -path ./var/lib/clayer -prune -o \
     -printf '%p %y %m %U %G %s %l\n' | sort)
}

memcheck build build Containerfile --root "$T/r1"
memcheck restore restore Containerfile --no-build --root "$T/r2"
if [ -e "$T/r2/opt/app/data.txt" ] &&
   [ "$(listing "$T/r1")" = "$(listing "$T/r2")" ]; then
  ok "the restored root matches the built one"
else
  not_ok "the restored root matches the built one"
  diff <(listing "$T/r1") <(listing "$T/r2") | head -20
fi
finish
