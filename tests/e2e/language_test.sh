#!/bin/bash
# The Containerfile language executed for real: one container boot runs
# `clayer build` on a Containerfile per case of section A of the
# real-world cases (A1 ... A19) and on COPY, ADD, FETCH, SHELL, heredoc
# and exec-form cases; the files they leave under /opt/t are copied out
# and compared byte for byte with what Docker's rules give.
set -u
E2E_NAME=e2e-language
. "$(dirname "$0")/lib.sh"
need_root
new_area

C=$T/ctx
mkdir -p "$C/data/sub" "$T/www/src/tool-1.0/bin" "$T/www/gh/repos/acme/tool/tarball" \
  "$T/cache" "$T/out" "$T/outside"
TAB=$(printf '\t')

# -- files served on 127.0.0.1 --------------------------------------------
printf '#!/bin/sh\necho tool works\n' > "$T/www/src/tool-1.0/bin/tool"
chmod 755 "$T/www/src/tool-1.0/bin/tool"
printf 'readme\n' > "$T/www/src/tool-1.0/README"
tar -C "$T/www/src" -czf "$T/www/tool.tar.gz" tool-1.0
tar -C "$T/www/src" -czf "$T/www/gh/repos/acme/tool/tarball/v1" tool-1.0
(cd "$T/www" && python3 -c \
  'import shutil; shutil.make_archive("tool", "zip", "src")')
printf '#!/bin/sh\necho hello from a fetched script\n' > "$T/www/hello.sh"
printf 'served notes\n' > "$T/www/notes.txt"
serve "$T/www"
URL=http://127.0.0.1:$HTTP_PORT/files

# -- the build context -------------------------------------------------------
printf 'one\n' > "$C/data/one.txt"
printf 'two\n' > "$C/data/two.txt"
printf 'three\n' > "$C/data/sub/three"
printf 'bin\000ary\377\n' > "$C/bin.dat"
printf 'secret\n' > "$T/outside/secret"
ln -s "$T/outside" "$C/out-link"
mkdir -p "$T/pkg/pkg/etc"
printf 'pkg conf\n' > "$T/pkg/pkg/etc/conf"
tar -C "$T/pkg" -cJf "$C/pkg.tar.xz" pkg

# every build, in order: FILE [clayer build arguments]
ORDER=$T/order
: > "$ORDER"
cf() {   # cf NAME [ARGS...]: the Containerfile comes on stdin
  cat > "$C/$1"
  echo "$*" >> "$ORDER"
}
cfp() {  # cfp NAME FORMAT: the Containerfile made by printf
  printf "$2" > "$C/$1"
  echo "$1" >> "$ORDER"
}

# -- section A -----------------------------------------------------------------
cfp A1 'RUN mkdir -p /opt/t\nRUN echo one \\ \t \n    two > /opt/t/a1\n'
cf A2 <<'EOF'
RUN mkdir -p /opt/t
RUN printf a > /opt/t/a2 \
# a full-line comment in the middle of the chain
    && printf b >> /opt/t/a2 \
    # an indented comment is also a comment
    && printf c >> /opt/t/a2
EOF
cfp A4 'RUN mkdir -p /opt/t\nRUN printf x > /opt/t/a4 \\\n\n    && printf y >> /opt/t/a4\nRUN echo z > /opt/t/a4b \\\n'
cf A5 <<'EOF'
RUN mkdir -p /opt/t
RUN printf '%s|' ab\
cd > /opt/t/a5a
RUN printf '%s|' ab\
  cd > /opt/t/a5b
EOF
cf A7 <<'EOF'
RUN mkdir -p /opt/t
ENV A="one two" B=three\ four C='$NOT_EXPANDED' \
    D=plain E=
ENV "F"="g" 'H'='i j'
RUN printf '[%s]' "$A" "$B" "$C" "$D" "$E" "$F" "$H" > /opt/t/a7
RUN env | grep -qx E= && echo set > /opt/t/a7e
EOF
cfp A7q 'RUN mkdir -p /opt/t && touch /opt/t/a7q-ran\nENV "K=v"\n'
cf A8 <<'EOF'
RUN mkdir -p /opt/t
ENV GREETING hello   big  world
ENV ONE TWO= THREE=world
ENV Q One "two  two" three
ENV DEPS a \
    b
RUN printf '[%s]' "$GREETING" "$ONE" "$Q" "$DEPS" > /opt/t/a8
EOF
cf A9 <<'EOF'
RUN mkdir -p /opt/t
ENV SET=val EMPTY=
ENV R1=${SET:-d}/${EMPTY:-d}/${UNSET:-d} \
    R2=${SET-d}/${EMPTY-d}/${UNSET-d} \
    R3=${SET:+a}/${EMPTY:+a}/${UNSET:+a} \
    R4=${SET+a}/${EMPTY+a}/${UNSET+a} \
    R5=x${UNSET}y$UNSET.z
ENV abc=hello
ENV abc=bye def=$abc
ENV ghi=$abc
RUN printf '%s\n' "$R1" "$R2" "$R3" "$R4" "$R5" "$def" "$ghi" > /opt/t/a9
EOF
n=0
for bad in 'ENV V=${A:-fallback' 'ENV V=${{A}}' 'ENV V=${A=x}'; do
  n=$((n + 1))
  printf 'RUN mkdir -p /opt/t && touch /opt/t/a10-%s-ran\n%s\n' "$n" "$bad" \
    > "$C/A10-$n"
  echo "A10-$n" >> "$ORDER"
done
cf A12 <<'EOF'
RUN mkdir -p /opt/t
ENV WHO=builder
RUN echo '$WHO' "$WHO" \$WHO > /opt/t/a12
EOF
cf A13 --cache "dir:$T/cache13" <<'EOF'
RUN mkdir -p /opt/t
RUN ["/usr/bin/touch", "/opt/t/a13 $HOME"]
RUN ['touch', '/opt/t/a13b']
EOF
cf A14 <<EOF
RUN mkdir -p /opt/t
RUN <<EOT
set -e
# shell comment inside the heredoc
echo one > /opt/t/a14
ENV() { echo "ENV got \$*" >> /opt/t/a14; }
ENV PATH=/broken
echo two >> /opt/t/a14
EOT
RUN command -v sh > /opt/t/a14-path
RUN <<-EOT
${TAB}echo tabbed > /opt/t/a14b
${TAB}EOT
EOF
cfp A15 'RUN mkdir -p /opt/t\r\nRUN printf "%%s" ab \\\r\n    > /opt/t/a15\r\nRUN <<EOF\r\necho hi > /opt/t/a15b\r\nEOF\r\n'
cfp A16 '\xef\xbb\xbfRUN mkdir -p /opt/t && echo ok > /opt/t/a16\n'
cfp A16dir '\xef\xbb\xbf# escape=`\nRUN mkdir -p /opt/t\nRUN printf %%s x `\n  > /opt/t/a16b\n'
printf 'RUN mkdir -p /opt/t && touch /opt/t/a16u-ran\n' | iconv -t UTF-16 \
  > "$C/A16u"
echo A16u >> "$ORDER"
cf A17 <<EOF
from scratch
RUN mkdir -p /opt/t
env Mode=lower
Run printf '%s' "\$Mode" > /opt/t/a17
ENV${TAB}T1=a${TAB}T2=b
RUN${TAB}printf${TAB}'%s%s'${TAB}"\$T1"${TAB}"\$T2"${TAB}>${TAB}/opt/t/a17b
workdir /opt/t/a17dir
rUn pwd > /opt/t/a17pwd
EOF
cf A19 <<'EOF'
RUN mkdir -p /opt/t
ARG VERSION=1.2.3
ARG EMPTYDECL
ENV V1=${VERSION:-unset} V2=${VERSION-unset} V3=${EMPTYDECL-unset}
RUN printf '%s %s %s %s' "$V1" "$V2" "$V3" "$VERSION" > /opt/t/a19
EOF
sed 's#/opt/t/a19#/opt/t/a19b#' "$C/A19" > "$C/A19b"
echo "A19b --build-arg VERSION=2" >> "$ORDER"

# -- COPY, ADD, FETCH, SHELL, heredocs, exec form, RUN's environment -----------
cf copy <<'EOF'
RUN mkdir -p /opt/t
COPY data/*.txt /opt/t/copy-glob/
COPY data /opt/t/copy-dir
COPY bin.dat /opt/t/copy-renamed.bin
COPY data/one.txt data/sub/three /opt/t/copy-two/
WORKDIR /opt/t/copy-wd
COPY bin.dat .
COPY --chmod=0750 --chown=daemon:bin data/one.txt /opt/t/copy-owned
RUN stat -c '%a %U %G' /opt/t/copy-owned > /opt/t/copy-owned.stat
ADD pkg.tar.xz /opt/t/add-tar/
ADD http://127.0.0.1:${HTTP_PORT}/files/notes.txt /opt/t/add-url/
RUN stat -c '%a' /opt/t/add-url/notes.txt > /opt/t/add-url.mode
EOF
cfp copy-escape 'RUN mkdir -p /opt/t && touch /opt/t/escape1-ran\nCOPY ../outside/secret /opt/t/escaped\n'
cfp copy-link 'RUN mkdir -p /opt/t && touch /opt/t/escape2-ran\nCOPY out-link/secret /opt/t/escaped\n'
cf fetch <<EOF
RUN mkdir -p /opt/t
FETCH --strip-components=1 $URL/tool.tar.gz /opt/t/fetch-tool
FETCH $URL/tool.zip /opt/t/fetch-zip
FETCH --chmod=0755 $URL/hello.sh /opt/t/fetch-bin
RUN /opt/t/fetch-bin/hello.sh > /opt/t/fetch-ran
FETCH github:acme/tool@v1 /opt/t/fetch-gh
EOF
cf fetch-bad <<EOF
RUN mkdir -p /opt/t/fetch-keep && echo keep > /opt/t/fetch-keep/old
FETCH --sha256=$(printf '0%.0s' $(seq 64)) $URL/tool.tar.gz /opt/t/fetch-keep
RUN touch /opt/t/fetch-after
EOF
cf shell <<'EOF'
RUN mkdir -p /opt/t
SHELL ["/bin/bash", "-c"]
RUN [[ -n "$BASH_VERSION" ]] && echo bash > /opt/t/shell1
SHELL ["/usr/bin/python3", "-c"]
RUN open('/opt/t/shell-py', 'w').write('python\n')
SHELL ["/bin/sh", "-c"]
RUN echo "${BASH_VERSION:-plain}" > /opt/t/shell2
EOF
cf heredoc <<'EOF'
RUN mkdir -p /opt/t
ENV GREETING=hi
WORKDIR /opt/t/hdw
RUN <<EOT
#!/usr/bin/env python3
import os
open('/opt/t/hd-py', 'w').write(os.getcwd() + ' ' + os.environ['GREETING'] + '\n')
EOT
RUN <<EOT
#!/bin/bash -e
printf '%s %s\n' "${BASH_VERSION:+bash}" "$(basename "$0")" > /opt/t/hd-bash
EOT
RUN cat <<"A" > /opt/t/hd-quoted && cat <<B > /opt/t/hd-second
$GREETING stays
A
$GREETING expanded
B
EOF
cf exec <<'EOF'
RUN mkdir -p /opt/t
ENV X=from-env
RUN ["/bin/sh", "-c", "printf '%s|%s' \"$0\" \"$X\" > /opt/t/exec0", "lit $X"]
RUN ["printf", "not run by a shell"]
EOF
cf env <<'EOF'
RUN mkdir -p /opt/t
RUN printf '%s|%s\n' "$HOME" "$PIP_BREAK_SYSTEM_PACKAGES" > /opt/t/env1
ARG HOME=/argh
RUN printf '%s\n' "$HOME" > /opt/t/env2
ENV HOME=/envh
RUN printf '%s\n' "$HOME" > /opt/t/env3
ARG HOME=/again
RUN printf '%s\n' "$HOME" > /opt/t/env4
WORKDIR /opt/t/wd
WORKDIR rel
RUN pwd > /opt/t/env-pwd
EOF
# the copy case names the port through a build arg (ADD expands ${...})
sed -i "s/^copy\$/copy --build-arg HTTP_PORT=$HTTP_PORT/" "$ORDER"
sed -i '1i ARG HTTP_PORT' "$C/copy"

# -- one boot, every build -----------------------------------------------------
# The builds watch only /opt/t (a scan of the whole of / costs seconds each);
# the control build at the end watches everything, as by default.
echo 'return { watch = { "/opt/t" } }' > "$T/narrow.lua"
cat > "$T/inner.sh" <<'EOS'
ln -sf "$CLAYER_BIN" /usr/local/bin/clayer
export CLAYER_GITHUB_API=$(cat "$T/gh-api")
cd "$T/ctx"
set +e
while read -r f args; do
  # shellcheck disable=SC2086
  clayer build "$f" --no-push --cache "dir:$T/cache" \
    --policy "$T/narrow.lua" $args \
    > "$T/out/$f.log" 2>&1
  echo $? > "$T/out/$f.rc"
done < "$T/order"
# a control: the same tool publishes when nothing fails
SECONDS=0
clayer build A1 --cache "dir:$T/cache1" > "$T/out/A1-publish.log" 2>&1
echo $? > "$T/out/A1-publish.rc"
echo "# the control build (whole /) took $SECONDS s"
set -e
mkdir -p "$T/out/t"
cp -a /opt/t/. "$T/out/t/"
ls /opt/t | grep -c "$(printf '\r')" > "$T/out/cr-count" || true
EOS
echo "$URL/gh" > "$T/gh-api"
start=$(date +%s)
boot "bash $T/inner.sh" || not_ok "the boot ran to its end"
echo "# $(wc -l < "$ORDER") builds in $(($(date +%s) - start)) s"

O=$T/out/t
rc() { [ "$(cat "$T/out/$1.rc" 2>/dev/null)" = "$2" ]; }
# same NAME FORMAT: /opt/t/NAME holds exactly printf FORMAT's bytes
same() {
  printf "$2" > "$T/want"
  if cmp -s "$T/want" "$O/$1"; then
    ok "$1 == $(od -An -c "$T/want" | tr -s ' \n' ' ')"
  else
    not_ok "$1: want $(od -c < "$T/want" | head -3), got $(od -c < "$O/$1" 2>&1 | head -3)"
  fi
}
built() {   # built FILE...: each build exited 0
  local f
  for f in "$@"; do
    if rc "$f" 0; then ok "$f builds"
    else not_ok "$f builds (exit $(cat "$T/out/$f.rc" 2>/dev/null))"; sed 's/^/#   /' "$T/out/$f.log" | tail -5
    fi
  done
}
built A1 A2 A4 A5 A7 A8 A9 A12 A14 A15 A16 A16dir A17 A19 A19b copy fetch \
  shell heredoc exec env

same a1 'one two\n'
same a2 'abc'
same a4 'xy'
same a4b 'z\n'
same a5a 'abcd|'
same a5b 'ab|cd|'
same a7 '[one two][three four][$NOT_EXPANDED][plain][][g][i j]'
same a7e 'set\n'
check "A7: ENV \"K=v\" is an unmatched quote: exit 2, nothing ran" \
  bash -c "[ \$(cat $T/out/A7q.rc) = 2 ] && grep -q '^clayer: A7q:2:' $T/out/A7q.log && [ ! -e $O/a7q-ran ]"
same a8 '[hello   big  world][TWO= THREE=world][One two  two three][a     b]'
same a9 'val/d/d\nval//d\na//\na/a/\nxy.z\nhello\nbye\n'
for n in 1 2 3; do
  check "A10-$n: a malformed substitution: exit 2, one FILE:2:COL line, nothing ran" \
    bash -c "[ \$(cat $T/out/A10-$n.rc) = 2 ] && grep -q '^clayer: A10-$n:2:[0-9]*: ' $T/out/A10-$n.log && [ \$(wc -l < $T/out/A10-$n.log) = 1 ] && [ ! -e $O/a10-$n-ran ]"
done
same a12 '$WHO builder $WHO\n'
same 'a13 $HOME' ''
check "A13: the shell-form fallback fails with 127, exit 1" \
  bash -c "[ \$(cat $T/out/A13.rc) = 1 ] && grep -q 'A13:3:1: RUN failed (exit status 127)' $T/out/A13.log"
check "A13: the fallback warned about the invalid JSON" \
  grep -q "A13:3:.*warning" "$T/out/A13.log"
check "A13: /opt/t/a13b does not exist" test ! -e "$O/a13b"
check "A13: a failed build publishes nothing" \
  bash -c "[ -z \"\$(ls -A $T/cache13 2>/dev/null)\" ]"
check "control: a good build publishes to the same kind of cache" \
  bash -c "[ \$(cat $T/out/A1-publish.rc) = 0 ] && ls $T/cache1 | grep -q '^layer-'"
same a14 'one\nENV got PATH=/broken\ntwo\n'
check "A14: PATH untouched by the heredoc's ENV line" test -s "$O/a14-path"
same a14b 'tabbed\n'
same a15 'ab'
same a15b 'hi\n'
check "A15: no file name holds a CR" grep -qx 0 "$T/out/cr-count"
same a16 'ok\n'
same a16b 'x'
check "A16: UTF-16 refused naming the encoding, exit 2, nothing ran" \
  bash -c "[ \$(cat $T/out/A16u.rc) = 2 ] && grep -q 'UTF-16' $T/out/A16u.log && [ ! -e $O/a16u-ran ]"
same a17 'lower'
same a17b 'ab'
same a17pwd '/opt/t/a17dir\n'
same a19 '1.2.3 1.2.3 unset 1.2.3'
same a19b '2 2 unset 2'

same copy-glob/one.txt 'one\n'
same copy-glob/two.txt 'two\n'
check "COPY glob: only the matches" \
  bash -c "[ \"\$(ls -A $O/copy-glob | tr '\n' ' ')\" = 'one.txt two.txt ' ]"
same copy-dir/one.txt 'one\n'
same copy-dir/sub/three 'three\n'
check "COPY folder: its contents, not the folder" test ! -e "$O/copy-dir/data"
same copy-renamed.bin 'bin\000ary\377\n'
same copy-two/one.txt 'one\n'
same copy-two/three 'three\n'
same copy-wd/bin.dat 'bin\000ary\377\n'
same copy-owned 'one\n'
same copy-owned.stat '750 daemon bin\n'
same add-tar/pkg/etc/conf 'pkg conf\n'
same add-url/notes.txt 'served notes\n'
same add-url.mode '600\n'
for e in copy-escape copy-link; do
  check "$e: a source outside the context: exit 2, FILE:2:1, nothing ran" \
    bash -c "[ \$(cat $T/out/$e.rc) = 2 ] && grep -q '^clayer: $e:2:1: COPY .*outside the build context' $T/out/$e.log && [ ! -e $O/escaped ]"
done
check "the escapes ran nothing" test ! -e "$O/escape1-ran" -a ! -e "$O/escape2-ran"

same fetch-tool/bin/tool '#!/bin/sh\necho tool works\n'
same fetch-tool/README 'readme\n'
check "FETCH zip: saved as is" cmp -s "$T/www/tool.zip" "$O/fetch-zip/tool.zip"
check "FETCH --chmod=0755" test "$(stat -c %a "$O/fetch-bin/hello.sh")" = 755
same fetch-ran 'hello from a fetched script\n'
same fetch-gh/bin/tool '#!/bin/sh\necho tool works\n'
check "FETCH --sha256 mismatch: exit 1, names the line" \
  bash -c "[ \$(cat $T/out/fetch-bad.rc) = 1 ] && grep -q 'fetch-bad:2:1: FETCH .*sha256 mismatch' $T/out/fetch-bad.log"
check "FETCH --sha256 mismatch: DEST as it was, nothing after ran" \
  bash -c "[ \"\$(ls -A $O/fetch-keep)\" = old ] && [ ! -e $O/fetch-after ]"

same shell1 'bash\n'
same shell-py 'python\n'
same shell2 'plain\n'
same hd-py '/opt/t/hdw hi\n'
same hd-bash 'bash script\n'
same hd-quoted '$GREETING stays\n'
same hd-second 'hi expanded\n'
same exec0 'lit $X|from-env'
same env1 '/root|1\n'
same env2 '/argh\n'
same env3 '/envh\n'
same env4 '/envh\n'
same env-pwd '/opt/t/wd/rel\n'
finish
