#!/bin/bash
# Two boots of a real container: the first builds a Containerfile that
# installs a Debian package with apt-get, writes, modifies and deletes
# files and FETCHes a tarball from a local server, and publishes the layer
# to a dir: cache; the second, a fresh container, restores it and finds
# everything as the first left it.
set -u
E2E_NAME=e2e-boot
. "$(dirname "$0")/lib.sh"
need_root
new_area

# a tarball to FETCH, served on 127.0.0.1
mkdir -p "$T/www/src/tool-1.0/bin" "$T/ctx" "$T/cache" "$T/out"
printf '#!/bin/sh\necho tool works\n' > "$T/www/src/tool-1.0/bin/tool"
chmod 755 "$T/www/src/tool-1.0/bin/tool"
tar -C "$T/www/src" -czf "$T/www/tool.tar.gz" tool-1.0
serve "$T/www"

cat > "$T/ctx/Containerfile" <<CF
# e2e: a real package, files, links, modes, deletions, a FETCH
ENV GREETING="hello from clayer" TOOL_HOME=/opt/tool
ARG FLAVOR=plain
RUN apt-get install -y --no-install-recommends hello >/dev/null 2>&1 || \\
    (apt-get update -qq && apt-get install -y --no-install-recommends hello)
FETCH --strip-components=1 http://127.0.0.1:$HTTP_PORT/files/tool.tar.gz \${TOOL_HOME}
WORKDIR /opt/e2e
RUN printf 'data\n' > file.txt && ln -s file.txt link && ln file.txt hard \\
 && printf '#!/bin/sh\necho restricted\n' > restricted.sh \\
 && chmod 0750 restricted.sh && echo "\$FLAVOR" > flavor
RUN mkdir -p dir/sub && echo deep > dir/sub/f
RUN rm -f /etc/issue.net && echo "changed by clayer" >> /etc/motd \\
 && rm -rf /usr/share/doc/bash && echo now-a-file > /usr/share/doc/bash
CF

listing='cd / && find opt/e2e opt/tool usr/bin/hello usr/share/doc/bash \
  -printf "%p %y %m %U %l %n\n" | sort && \
  find opt/e2e opt/tool usr/bin/hello usr/share/doc/bash -type f \
  -exec sha256sum {} + | sort'

boot "
  cd \$T/ctx
  \$CLAYER_BIN -e 'os.exit(0)'
  ln -sf \$CLAYER_BIN /usr/local/bin/clayer
  clayer build Containerfile --cache dir:\$T/cache > \$T/out/build.log 2>&1 ||
    { echo build failed; cat \$T/out/build.log; exit 1; }
  ($listing) > \$T/out/listing1
  hello > \$T/out/hello1
"
check "boot 1 builds and publishes" test -s "$T/out/listing1"
tag=$(ls "$T/cache" | grep '^layer-' | head -1)
check "the cache holds one entry with layer.json and layer.tar.zst" \
  test -f "$T/cache/$tag/layer.json" -a -f "$T/cache/$tag/layer.tar.zst"
check "the host is untouched by the build" test -e /etc/issue.net
check "the host has no hello" test ! -e /usr/bin/hello

boot "
  cd \$T/ctx
  ln -sf \$CLAYER_BIN /usr/local/bin/clayer
  test ! -e /usr/bin/hello
  clayer restore Containerfile --cache dir:\$T/cache --no-build \
    > \$T/out/restore.log 2>&1 || { cat \$T/out/restore.log; exit 1; }
  ($listing) > \$T/out/listing2
  hello > \$T/out/hello2
  /opt/tool/bin/tool > \$T/out/tool2
  test -e /etc/issue.net && echo present > \$T/out/issue || echo gone > \$T/out/issue
  tail -n 1 /etc/motd > \$T/out/motd
  eval \"\$(clayer env)\"
  printf '%s|%s|%s\n' \"\$GREETING\" \"\$TOOL_HOME\" \"\${FLAVOR-unset}\" > \$T/out/env
  clayer restore Containerfile --cache dir:\$T/cache --no-build \
    > \$T/out/again.log 2>&1
  stat -c '%a %h %i' /opt/e2e/restricted.sh /opt/e2e/file.txt /opt/e2e/hard \
    > \$T/out/stat
"
check "boot 2 restores" test -s "$T/out/listing2"
check "the restored tree matches the built one (types, modes, owners, links, contents)" \
  cmp -s "$T/out/listing1" "$T/out/listing2"
[ -s "$T/out/listing2" ] && ! cmp -s "$T/out/listing1" "$T/out/listing2" &&
  diff "$T/out/listing1" "$T/out/listing2" | head -20
check "the apt package's program runs after restore" \
  grep -q "Hello, world" "$T/out/hello2"
check "the FETCHed tool runs after restore" grep -qx "tool works" "$T/out/tool2"
check "a deletion is restored" grep -qx gone "$T/out/issue"
check "a modification is restored" grep -qx "changed by clayer" "$T/out/motd"
check "ENV values come back through clayer env; ARG does not" \
  grep -qx "hello from clayer|/opt/tool|unset" "$T/out/env"
check "a second restore in the same boot does nothing" \
  grep -q "already applied" "$T/out/again.log"
check "mode 0750 kept; hardlink kept" \
  bash -c "read -r m1 _ _ < '$T/out/stat'; [ \"\$m1\" = 750 ] &&
    [ \"\$(sed -n 2p '$T/out/stat' | cut -d' ' -f2,3)\" = \
      \"\$(sed -n 3p '$T/out/stat' | cut -d' ' -f2,3)\" ]"

# bad input and failing builds, in a container too
printf 'RUN echo ok\nFROBNICATE x\n' > "$T/ctx/Bad.unknown"
printf 'ENV A="unterminated\n' > "$T/ctx/Bad.quote"
printf 'FETCH http://127.0.0.1/x\n' > "$T/ctx/Bad.fetch"
printf 'RUN echo first-line; echo the-last-words; exit 3\n' > "$T/ctx/Bad.run"
boot "
  cd \$T/ctx
  ln -sf \$CLAYER_BIN /usr/local/bin/clayer
  for f in missing Bad.unknown Bad.quote Bad.fetch; do
    set +e
    clayer build \$f --cache dir:\$T/cache2 > \$T/out/\$f.out 2>&1
    echo \$? > \$T/out/\$f.rc
    set -e
  done
  set +e
  clayer build Bad.run --cache dir:\$T/cache2 > \$T/out/run.out 2>&1
  echo \$? > \$T/out/run.rc
"
check "a missing Containerfile: exit 2, one line naming it" \
  bash -c "[ \$(cat $T/out/missing.rc) = 2 ] && [ \$(wc -l < $T/out/missing.out) = 1 ] && grep -q 'missing' $T/out/missing.out"
check "an unknown instruction: exit 2, FILE:LINE:COL" \
  bash -c "[ \$(cat $T/out/Bad.unknown.rc) = 2 ] && grep -q '^clayer: Bad.unknown:2:1: .*FROBNICATE' $T/out/Bad.unknown.out"
check "an unterminated quote: exit 2, FILE:LINE" \
  bash -c "[ \$(cat $T/out/Bad.quote.rc) = 2 ] && grep -q '^clayer: Bad.quote:1:' $T/out/Bad.quote.out"
check "FETCH with one argument: exit 2" \
  bash -c "[ \$(cat $T/out/Bad.fetch.rc) = 2 ] && grep -q '^clayer: Bad.fetch:1:1: ' $T/out/Bad.fetch.out"
check "nothing ran for bad input (no RUN output)" \
  bash -c "! grep -q '^ok$' $T/out/Bad.unknown.out"
check "a failing RUN: exit 1, shows its last output, names the line" \
  bash -c "[ \$(cat $T/out/run.rc) = 1 ] && grep -q the-last-words $T/out/run.out && grep -q 'Bad.run:1:1: RUN failed (exit status 3)' $T/out/run.out"
check "a failing RUN publishes nothing" \
  bash -c "[ -z \"\$(ls -A $T/cache2 2>/dev/null)\" ]"
finish
