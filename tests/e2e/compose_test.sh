#!/bin/bash
# Three layers composed in order across two container boots: the first
# builds and publishes them, the second restores them; then the middle
# layer changes and a compose in the same boot rebuilds only it and
# applies the one after it again, so later layers still win.
set -u
E2E_NAME=e2e-compose
. "$(dirname "$0")/lib.sh"
need_root
new_area
mkdir -p "$T/ctx" "$T/cache" "$T/out"
cat > "$T/ctx/Containerfile" <<'CF'
ENV STACK=base
RUN mkdir -p /opt/stack && echo base > /opt/stack/who && echo b > /opt/stack/base
CF
cat > "$T/ctx/Containerfile.py" <<'CF'
ENV STACK=py
RUN echo py > /opt/stack/who && echo p1 > /opt/stack/py
CF
cat > "$T/ctx/Containerfile.tools" <<'CF'
ENV STACK=tools
RUN echo tools > /opt/stack/who && echo t > /opt/stack/tools
CF
files="Containerfile Containerfile.py Containerfile.tools"

boot "
  cd \$T/ctx
  ln -sf \$CLAYER_BIN /usr/local/bin/clayer
  clayer compose $files --cache dir:\$T/cache --json > \$T/out/c1.json 2> \$T/out/c1.log
"
check "boot 1 builds three layers" \
  bash -c "grep -c '\"action\": \"built\"' $T/out/c1.json | grep -qx 3"
check "three entries in the cache" \
  bash -c "[ \$(ls $T/cache | grep -c '^layer-') = 3 ]"

boot "
  cd \$T/ctx
  ln -sf \$CLAYER_BIN /usr/local/bin/clayer
  test ! -e /opt/stack/who
  clayer compose $files --cache dir:\$T/cache --json > \$T/out/c2.json 2> \$T/out/c2.log
  cat /opt/stack/who > \$T/out/who2
  eval \"\$(clayer env)\"; echo \"\$STACK\" > \$T/out/env2
  echo 'ENV STACK=py2' > Containerfile.py.new
  echo 'RUN echo py2 > /opt/stack/who && echo p2 > /opt/stack/py' >> Containerfile.py.new
  cp Containerfile.py Containerfile.py.orig
  mv Containerfile.py.new Containerfile.py
  clayer compose $files --cache dir:\$T/cache --json > \$T/out/c3.json 2> \$T/out/c3.log
  mv Containerfile.py.orig Containerfile.py
  cat /opt/stack/who > \$T/out/who3
  cat /opt/stack/py > \$T/out/py3
  eval \"\$(clayer env)\"; echo \"\$STACK\" > \$T/out/env3
  clayer status > \$T/out/status 2>&1 || echo \$? > \$T/out/status.rc
"
actions() { grep '"action"' "$1" | sed 's/.*"action": "\([a-z]*\)".*/\1/' | tr '\n' ' '; }
check "boot 2 restores all three from the cache" \
  test "$(actions "$T/out/c2.json")" = "hit hit hit "
check "the last layer wins" grep -qx tools "$T/out/who2"
check "the environment is the last layer's" grep -qx tools "$T/out/env2"
check "after the middle layer changed: skipped, built, applied again" \
  test "$(actions "$T/out/c3.json")" = "skipped built hit "
check "later layers still win after the change" grep -qx tools "$T/out/who3"
check "the changed layer's files are there" grep -qx p2 "$T/out/py3"
check "status finds drift once the file is back to its old text" \
  grep -qx 4 "$T/out/status.rc"
finish
