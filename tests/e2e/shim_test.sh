#!/bin/bash
# The install shim in real interactive shells.  bash and zsh run inside
# tmux; after eval "$(clayer shim Containerfile)" they install wheels this
# script builds and serves from a package index on 127.0.0.1 into a
# throwaway venv, and call a stand-in uv.  The Containerfiles must gain
# exactly the expected lines, exit statuses must pass through, and the
# recorded lines must replay with /bin/sh -c in a fresh venv.  Then, in a
# container, the shim records an apt-get install from a local repository,
# and a rebuild from the Containerfile in a fresh container reproduces it.
set -u
E2E_NAME=e2e-shim
. "$(dirname "$0")/lib.sh"
need_root
new_area

PY=/usr/bin/python3
mkdir -p "$T/bin" "$T/home" "$T/www" "$T/rc" "$T/out" "$T/scratch"
# a private copy: a rebuild of the shared binary mid-test must not matter
cp "$CLAYER_BIN" "$T/clayer-lua"
ln -s "$T/clayer-lua" "$T/bin/clayer"

# a stand-in uv: logs its arguments one per line, exits $UV_FAIL (or 0)
cat > "$T/bin/uv" <<'EOF'
#!/bin/sh
{ echo "--"; for a in "$@"; do printf '%s\n' "$a"; done; } >> "$UV_LOG"
echo "stand-in uv: $*"
exit "${UV_FAIL:-0}"
EOF
chmod 755 "$T/bin/uv"

# {==================================================================
# Wheels and a PEP 503 index on 127.0.0.1
# ===================================================================
"$PY" - "$T/www" <<'EOF'
import base64, hashlib, os, sys, zipfile
www = sys.argv[1]
os.makedirs(f"{www}/files")
def wheel(name, ver):
    fn = f"{name}-{ver}-py3-none-any.whl"
    di = f"{name}-{ver}.dist-info"
    files = {
        f"{name}/__init__.py": f'VERSION = "{ver}"\n',
        f"{di}/METADATA": f"Metadata-Version: 2.1\nName: {name}\n"
                          f"Version: {ver}\n",
        f"{di}/WHEEL": "Wheel-Version: 1.0\nGenerator: clayer-e2e\n"
                       "Root-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    with zipfile.ZipFile(f"{www}/files/{fn}", "w") as z:
        for path, text in files.items():
            data = text.encode()
            z.writestr(path, data)
            d = base64.urlsafe_b64encode(hashlib.sha256(data).digest())
            record.append(f"{path},sha256={d.rstrip(b'=').decode()},"
                          f"{len(data)}")
        record.append(f"{di}/RECORD,,")
        z.writestr(f"{di}/RECORD", "\n".join(record) + "\n")
    digest = hashlib.sha256(open(f"{www}/files/{fn}", "rb").read())
    return fn, digest.hexdigest()
index = {"clayerdemo": ["1.0", "2.0"], "clayerextra": ["1.0"]}
os.makedirs(f"{www}/simple")
with open(f"{www}/simple/index.html", "w") as f:
    f.write("".join(f'<a href="{n}/">{n}</a>\n' for n in index))
for name, versions in index.items():
    os.makedirs(f"{www}/simple/{name}")
    links = []
    for v in versions:
        fn, sha = wheel(name, v)
        links.append(f'<a href="../../files/{fn}#sha256={sha}">{fn}</a>')
    with open(f"{www}/simple/{name}/index.html", "w") as f:
        f.write("<html><body>\n" + "\n".join(links) + "\n</body></html>\n")
EOF
"$PY" -u -m http.server 0 --bind 127.0.0.1 --directory "$T/www" \
  > "$T/http.log" 2>&1 &
HTTP_PID=$!
for _ in $(seq 100); do
  grep -q 'port [0-9]' "$T/http.log" 2>/dev/null && break
  sleep 0.05
done
PORT=$(sed -n 's/.* port \([0-9]*\).*/\1/p' "$T/http.log" | head -n 1)
IDX="http://127.0.0.1:$PORT/simple/"
check "the package index serves on 127.0.0.1" test -n "$PORT"

# a throwaway venv; pip's cache stays in the test area
export PIP_CACHE_DIR="$T/pipcache" PIP_DISABLE_PIP_VERSION_CHECK=1
"$PY" -m venv "$T/venv"
V="$T/venv"
check "a throwaway venv with pip" test -x "$V/bin/pip"

mkdir -p "$T/reqs"
printf -- '--index-url %s\n# base set\nclayerdemo<2\n' "$IDX" \
  > "$T/reqs/base.txt"
printf -- '-r base.txt\nclayerextra==1.0  # extra\n' > "$T/reqs/dev.txt"
# }==================================================================

# {==================================================================
# Interactive shells in tmux
# ===================================================================
tm() { tmux -S "$T/tmux.sock" -f /dev/null "$@"; }
trap 'tm kill-server 2>/dev/null; kill $HTTP_PID 2>/dev/null; rm -rf "$T"' EXIT

# start NAME COMMAND...: a detached tmux window running an interactive shell
start() {
  local name=$1
  shift
  if tm has-session 2>/dev/null; then
    tm new-window -d -n "$name" "$@"
  else
    tm new-session -d -s e2e -n "$name" -x 200 -y 50 "$@"
  fi
}

shell_env=(env -i HOME="$T/home" TERM=xterm LANG=C.UTF-8
  PATH="$T/bin:/usr/local/bin:/usr/bin:/bin" UV_LOG="$T/uv.log"
  PIP_CACHE_DIR="$T/pipcache" PIP_DISABLE_PIP_VERSION_CHECK=1
  HISTFILE=/dev/null)
start bash "${shell_env[@]}" bash --norc --noprofile -i
start zsh "${shell_env[@]}" zsh -f -i
N=0

# type NAME LINE: type LINE into window NAME and wait until it ran; the
# exit status is left in $RC.
type_in() {
  local name=$1 line=$2 f
  N=$((N + 1))
  f="$T/rc/$N"
  tm send-keys -t "e2e:$name" -l "$line; echo \$? > $f.tmp; mv $f.tmp $f"
  tm send-keys -t "e2e:$name" Enter
  for _ in $(seq 1200); do
    [ -e "$f" ] && break
    sleep 0.05
  done
  RC=$(cat "$f" 2>/dev/null || echo timeout)
}

# expect NAME DESCRIPTION STATUS LINE: type LINE, check its exit status
expect() {
  type_in "$1" "$4"
  if [ "$RC" = "$3" ]; then ok "$1: $2"; else
    not_ok "$1: $2 (exit $RC, wanted $3)"
    tm capture-pane -p -t "e2e:$1" | grep -v '^$' | tail -n 8
  fi
}

session() {
  local s=$1 P="$T/$1"
  mkdir -p "$P/proj" "$P/else"
  printf '# shim e2e\n' > "$P/proj/Containerfile"
  expect "$s" "eval the shim" 0 "cd $P/proj && eval \"\$(clayer shim Containerfile)\" && cd $P/else"
  expect "$s" "D8 line through the stand-in uv" 0 \
    "uv pip install 'numpy>=1.26,<3' 'requests[socks]' 'pkg ; python_version>\"3.8\"' > $P/uv.out"
  check "$s: the tool's output passes through" grep -qxF \
    "stand-in uv: pip install numpy>=1.26,<3 requests[socks] pkg ; python_version>\"3.8\"" \
    "$P/uv.out"
  expect "$s" "uv pip install --upgrade" 0 \
    "uv pip install --upgrade rich==13.7.1"
  expect "$s" "an immediate repeat, quieter" 0 \
    "uv pip install -q --upgrade rich==13.7.1"
  expect "$s" "a failing install returns its status" 3 \
    "UV_FAIL=3 uv pip install broken-thing"
  expect "$s" "uv run is not an install" 0 "uv run true"
  expect "$s" "activate the venv" 0 ". $V/bin/activate"
  expect "$s" "pip install from the local index" 0 \
    "pip install --index-url $IDX 'clayerdemo>=1.0,<2' > $P/pip.out 2>&1"
  check "$s: pip's own output passes through" \
    grep -q "Successfully installed clayerdemo-1.0\|already satisfied" "$P/pip.out"
  expect "$s" "python3 -m pip install -q" 0 \
    "python3 -m pip install -q --index-url $IDX clayerextra"
  expect "$s" "a failing pip install returns pip's status" 1 \
    "pip install --index-url $IDX clayer-no-such-package > /dev/null 2>&1"
  expect "$s" "python3 without -m pip passes through, status too" 7 \
    "python3 -c 'import clayerdemo, sys; sys.exit(7 if clayerdemo.VERSION == \"1.0\" else 1)'"
  expect "$s" "pip install -r with a nested -r, from another folder" 0 \
    "cd $T/reqs && pip install -q -r dev.txt && cd $P/else"
  expect "$s" "deactivate" 0 "deactivate"
  cat > "$T/$s.want" <<EOF
# shim e2e
RUN uv pip install --system 'numpy>=1.26,<3' 'requests[socks]' 'pkg ; python_version>"3.8"'
RUN uv pip install --system --upgrade rich==13.7.1
RUN $V/bin/python -m pip install --index-url $IDX 'clayerdemo>=1.0,<2'
RUN $V/bin/python -m pip install --index-url $IDX clayerextra
RUN $V/bin/python -m pip install --index-url $IDX 'clayerdemo<2' clayerextra==1.0
EOF
  if cmp -s "$T/$s.want" "$P/proj/Containerfile"; then
    ok "$s: the Containerfile gained exactly the expected lines"
  else
    not_ok "$s: the Containerfile gained exactly the expected lines"
    diff "$T/$s.want" "$P/proj/Containerfile"
    tm capture-pane -p -J -S -200 -t "e2e:$s" | grep -v '^$' | tail -n 30
    cat "$P/pip.out"
  fi
}

: > "$T/uv.log"
session bash
session zsh

# two shells appending to one Containerfile at the same time
declare -A load
printf 'FROM x\n' > "$T/shared"
# (zsh loads the shim the original tool's way: source uv_shim.sh FILE)
load[bash]="eval \"\$(clayer shim $T/shared)\""
load[zsh]=". $CLAYER_REPO/share/clayer/uv_shim.sh $T/shared"
for s in bash zsh; do
  tm send-keys -t "e2e:$s" -l "${load[$s]}; for i in 1 2 3 4 5 6 7 8 9 10; do uv pip install $s-\$i > /dev/null; done; touch $T/rc/both-$s"
  tm send-keys -t "e2e:$s" Enter
done
for _ in $(seq 1200); do
  [ -e "$T/rc/both-bash" ] && [ -e "$T/rc/both-zsh" ] && break
  sleep 0.05
done
check "two shells appending at once lose no line" \
  test "$(grep -c '^RUN uv pip install --system \(bash\|zsh\)-[0-9]*$' \
    "$T/shared")" = 20
check "and the lines are whole" test "$(wc -l < "$T/shared")" = 21
tm kill-server 2>/dev/null
# }==================================================================

# {==================================================================
# Replay the recorded lines in a fresh venv
# ===================================================================
rm -rf "$V"
"$PY" -m venv "$V"
: > "$T/uv.log"
replayed=0
while IFS= read -r line; do
  case $line in RUN\ *) ;; *) continue ;; esac
  if (cd "$T/scratch" && PATH="$T/bin:$PATH" UV_LOG="$T/uv.log" \
      /bin/sh -c "${line#RUN }") > "$T/out/replay.log" 2>&1; then
    replayed=$((replayed + 1))
  else
    cat "$T/out/replay.log"
  fi
done < "$T/bash/proj/Containerfile"
check "every recorded line replays with /bin/sh -c" test "$replayed" = 5
check "the replayed packages import, at the quoted version" \
  "$V/bin/python" -c 'import clayerdemo, clayerextra
assert clayerdemo.VERSION == "1.0", clayerdemo.VERSION'
cat > "$T/uv.want" <<'EOF'
--
pip
install
--system
numpy>=1.26,<3
requests[socks]
pkg ; python_version>"3.8"
--
pip
install
--system
--upgrade
rich==13.7.1
EOF
check "the replayed uv got its arguments exactly" cmp -s "$T/uv.want" "$T/uv.log"
check "replay left no stray files (no '=1.26,<3')" \
  test -z "$(ls -A "$T/scratch")"
# }==================================================================

# {==================================================================
# apt-get in a container, then a rebuild in another
# ===================================================================
# A local package and a flat repository: the test talks to no other host.
mkdir -p "$T/deb/usr/bin" "$T/deb/DEBIAN" "$T/apt" "$T/aptctx"
printf '#!/bin/sh\necho "Hello from clayer-hello"\n' > "$T/deb/usr/bin/clayer-hello"
chmod 755 "$T/deb/usr/bin/clayer-hello"
cat > "$T/deb/DEBIAN/control" <<'EOF'
Package: clayer-hello
Version: 1.0
Architecture: all
Maintainer: clayer tests <tests@example.invalid>
Description: a tiny package for the clayer shim test
EOF
dpkg-deb --root-owner-group --build "$T/deb" "$T/apt/clayer-hello_1.0_all.deb" \
  > /dev/null
{
  cat "$T/deb/DEBIAN/control"
  echo "Filename: ./clayer-hello_1.0_all.deb"
  echo "Size: $(stat -c %s "$T/apt/clayer-hello_1.0_all.deb")"
  echo "SHA256: $(sha256sum "$T/apt/clayer-hello_1.0_all.deb" | cut -d' ' -f1)"
} > "$T/apt/Packages"
chmod -R a+rX "$T/apt"
src="RUN rm -f /etc/apt/sources.list /etc/apt/sources.list.d/* && echo 'deb [trusted=yes] file:$T/apt ./' > /etc/apt/sources.list.d/clayer-e2e.list"
printf '%s\n' "$src" > "$T/aptctx/Containerfile"

boot "
  cd \$T/aptctx
  ln -sf \$T/clayer-lua /usr/local/bin/clayer
  sh -c \"\$(sed -n 's/^RUN //p' Containerfile)\"
  eval \"\$(clayer shim Containerfile)\"
  apt-get update -qq > \$T/out/apt-update.log 2>&1
  set +e
  apt-get install -y clayer-no-such-package > \$T/out/apt-fail.log 2>&1
  echo \$? > \$T/out/apt-fail.rc
  apt-get install -y -q clayer-hello > \$T/out/apt-install.log 2>&1
  echo \$? > \$T/out/apt-install.rc
  set -e
  clayer-hello > \$T/out/hello1
" || cat "$T/out/apt-update.log" "$T/out/apt-install.log" 2>/dev/null
check "apt-get in a container: a failed install returns apt's status" \
  test "$(cat "$T/out/apt-fail.rc" 2>/dev/null)" = 100
check "apt-get in a container: the install succeeds" \
  test "$(cat "$T/out/apt-install.rc" 2>/dev/null)" = 0
printf '%s\n%s\n' "$src" \
  "RUN apt-get update && apt-get install -y clayer-hello" > "$T/apt.want"
if cmp -s "$T/apt.want" "$T/aptctx/Containerfile"; then
  ok "apt-get: the Containerfile gained exactly one update-and-install line"
else
  not_ok "apt-get: the Containerfile gained exactly one update-and-install line"
  diff "$T/apt.want" "$T/aptctx/Containerfile"
fi
check "the host has no clayer-hello" test ! -e /usr/bin/clayer-hello

boot "
  cd \$T/aptctx
  ln -sf \$T/clayer-lua /usr/local/bin/clayer
  test ! -e /usr/bin/clayer-hello
  clayer build Containerfile --cache dir:\$T/cache --no-push \
    > \$T/out/rebuild.log 2>&1 || { cat \$T/out/rebuild.log; exit 1; }
  clayer-hello > \$T/out/hello2
"
check "a rebuild from the Containerfile in a fresh container reproduces it" \
  grep -qx "Hello from clayer-hello" "$T/out/hello2"
# }==================================================================
finish
