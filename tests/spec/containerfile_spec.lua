--- clayer.containerfile: parsing, positions, errors and word expansion.
-- Two tables drive most tests: CASES (a file's text in, instructions or
-- an exact error out) and EXPAND (a word and variables in, a value or an
-- exact error out). To add a case, add a row.
local lu = require "luaunit"
local h = require "helper"
local cf = require "clayer.containerfile"

local NONE = {}   -- in a 'want' row: this field must be absent
local BOM = "\xef\xbb\xbf"
-- the end of the message for a name that is not a variable name
local NAME_RULE = ": use letters, digits and '_', not starting with a digit"
local A14_BODY = "set -e\n# shell comment inside the heredoc\n"
   .. "echo one > /opt/t/a14\n"
   .. 'ENV() { echo "ENV got $*" >> /opt/t/a14; }\n'
   .. "ENV PATH=/broken\necho two >> /opt/t/a14\n"

-- A row: [1] name, [2] text, then any of
--   want      instructions, each compared field by field (a subset)
--   n         exact number of instructions (default: #want)
--   err       the exact error parse returns
--   warnings  the exact warnings (default: none)
--   env       variables after applying ENV and ARG in order (subset)
--   env_n     exact number of those variables
--   buildargs --build-arg values for env
--   opts      parse options
--   doc       fields of the document itself
local CASES = {
   -- A1: blanks after the continuation backslash
   { "A1 blanks after backslash", "RUN echo one \\ \t \n    two > /opt/t/a1\n",
     want = { { op = "RUN", line = 1, col = 1,
                cmd = "echo one     two > /opt/t/a1" } } },
   -- A2: comment lines inside a continuation are dropped
   { "A2 comments inside continuation",
     "RUN printf a > /opt/t/a2 \\\n"
     .. "# a full-line comment in the middle of the chain\n"
     .. "    && printf b >> /opt/t/a2 \\\n"
     .. "    # an indented comment is also a comment\n"
     .. "    && printf c >> /opt/t/a2\n",
     want = { { op = "RUN", line = 1, cmd = "printf a > /opt/t/a2     "
       .. "&& printf b >> /opt/t/a2     && printf c >> /opt/t/a2" } } },
   -- A4: empty continuation lines and a dangling backslash at the end
   { "A4 empty continuation line and dangling backslash",
     "RUN printf x > /opt/t/a4 \\\n\n    && printf y >> /opt/t/a4\n"
     .. "RUN echo z > /opt/t/a4b \\\n",
     want = { { op = "RUN", line = 1,
                cmd = "printf x > /opt/t/a4     && printf y >> /opt/t/a4" },
              { op = "RUN", line = 4, cmd = "echo z > /opt/t/a4b" } },
     warnings = { "CF:2:1: warning: empty continuation line" } },
   { "A4 blank continuation line of spaces and tabs",
     "RUN printf x \\\n \t \n  y\n",
     want = { { op = "RUN", cmd = "printf x   y" } },
     warnings = { "CF:2:1: warning: empty continuation line" } },
   { "A4 backslash at end of file without newline", "RUN a \\",
     want = { { op = "RUN", cmd = "a" } } },
   -- A5: leading whitespace of continuation lines is kept
   { "A5 continuation keeps indentation",
     "RUN printf '%s|' ab\\\ncd > /opt/t/a5a\n"
     .. "RUN printf '%s|' ab\\\n  cd > /opt/t/a5b\n",
     want = { { op = "RUN", line = 1, cmd = "printf '%s|' abcd > /opt/t/a5a" },
              { op = "RUN", line = 3,
                cmd = "printf '%s|' ab  cd > /opt/t/a5b" } } },
   -- A7: ENV with several pairs, quotes and escaped spaces
   { "A7 ENV pairs, quotes, escapes",
     "ENV A=\"one two\" B=three\\ four C='$NOT_EXPANDED' \\\n"
     .. "    D=plain E=\nENV \"F\"=\"g\" 'H'='i j'\n"
     .. "RUN printf '[%s]' \"$A\" \"$B\" \"$C\" \"$D\" \"$E\" \"$F\" \"$H\""
     .. " > /opt/t/a7\n",
     want = { { op = "ENV", pairs = { { "A", '"one two"' },
                { "B", "three\\ four" }, { "C", "'$NOT_EXPANDED'" },
                { "D", "plain" }, { "E", "" } } },
              { op = "ENV", line = 3, pairs = { { "F", '"g"' },
                { "H", "'i j'" } } },
              { op = "RUN", line = 4 } },
     env = { A = "one two", B = "three four", C = "$NOT_EXPANDED",
             D = "plain", E = "", F = "g", H = "i j" }, env_n = 7 },
   { "A7 one quote pair around the assignment", 'ENV "K=v"\n',
     err = "CF:1:5: unmatched double quote" },
   -- A8: legacy ENV KEY value
   { "A8 legacy ENV",
     "ENV GREETING hello   big  world\nENV ONE TWO= THREE=world\n"
     .. 'ENV Q One "two  two" three\nENV DEPS a \\\n    b\n'
     .. "RUN printf '[%s]' \"$GREETING\" \"$ONE\" \"$Q\" \"$DEPS\""
     .. " > /opt/t/a8\n",
     want = { { op = "ENV", pairs = { { "GREETING", "hello   big  world" } } },
              { op = "ENV", pairs = { { "ONE", "TWO= THREE=world" } } },
              { op = "ENV", pairs = { { "Q", 'One "two  two" three' } } },
              { op = "ENV", line = 4, pairs = { { "DEPS", "a     b" } } },
              { op = "RUN", line = 6 } },
     env = { GREETING = "hello   big  world", ONE = "TWO= THREE=world",
             Q = "One two  two three", DEPS = "a     b" }, env_n = 4 },
   -- A9: parameter expansion against set, empty and unset variables
   { "A9 expansion forms",
     "ENV SET=val EMPTY=\n"
     .. "ENV R1=${SET:-d}/${EMPTY:-d}/${UNSET:-d} \\\n"
     .. "    R2=${SET-d}/${EMPTY-d}/${UNSET-d} \\\n"
     .. "    R3=${SET:+a}/${EMPTY:+a}/${UNSET:+a} \\\n"
     .. "    R4=${SET+a}/${EMPTY+a}/${UNSET+a} \\\n"
     .. "    R5=x${UNSET}y$UNSET.z\n"
     .. "ENV abc=hello\nENV abc=bye def=$abc\nENV ghi=$abc\n"
     .. "RUN printf '%s\\n' \"$R1\" \"$R2\" \"$R3\" \"$R4\" \"$R5\" \"$def\""
     .. " \"$ghi\" > /opt/t/a9\n",
     n = 6,
     env = { R1 = "val/d/d", R2 = "val//d", R3 = "a//", R4 = "a/a/",
             R5 = "xy.z", def = "hello", ghi = "bye", abc = "bye" } },
   -- A10: malformed substitutions are errors
   { "A10 missing brace", "ENV V=${A:-fallback\n",
     err = "CF:1:7: syntax error: missing '}'" },
   { "A10 double brace", "ENV V=${{A}}\n",
     err = "CF:1:7: syntax error: bad substitution" },
   { "A10 assign modifier", "ENV V=${A=x}\n",
     err = "CF:1:7: unsupported modifier (=) in substitution" },
   -- A12: RUN text is not pre-expanded
   { "A12 RUN left to the shell",
     "ENV WHO=builder\nRUN echo '$WHO' \"$WHO\" \\$WHO > /opt/t/a12\n",
     want = { { op = "ENV", pairs = { { "WHO", "builder" } } },
              { op = "RUN",
                cmd = "echo '$WHO' \"$WHO\" \\$WHO > /opt/t/a12" } },
     env = { WHO = "builder" } },
   -- A13: exec form, and pseudo-JSON that falls back to shell form
   { "A13 exec form and invalid JSON",
     'RUN ["/usr/bin/touch", "/opt/t/a13 $HOME"]\n'
     .. "RUN ['touch', '/opt/t/a13b']\n",
     want = { { op = "RUN", exec = { "/usr/bin/touch", "/opt/t/a13 $HOME" },
                args = { "/usr/bin/touch", "/opt/t/a13 $HOME" } },
              { op = "RUN", line = 2, cmd = "['touch', '/opt/t/a13b']" } },
     warnings = { "CF:2:5: warning: RUN looks like exec form but is not a "
       .. "JSON array of strings; running it with the shell" } },
   -- A14: heredoc bodies belong to the shell
   { "A14 heredocs",
     "RUN <<EOF\n" .. A14_BODY .. "EOF\n"
     .. "RUN command -v sh > /opt/t/a14-path\n"
     .. "RUN <<-EOT\n\techo tabbed > /opt/t/a14b\n\tEOT\n",
     want = { { op = "RUN", line = 1, cmd = A14_BODY },
              { op = "RUN", line = 9, cmd = "command -v sh > /opt/t/a14-path" },
              { op = "RUN", line = 10,
                cmd = "echo tabbed > /opt/t/a14b\n" } } },
   { "A14 unterminated heredoc", "RUN <<EOF\necho hi\nEOF \n",
     err = "CF:1:5: unterminated heredoc" },
   -- A15: CRLF line endings
   { "A15 CRLF",
     'RUN printf "%s" ab \\\r\n    > /opt/t/a15\r\nRUN <<EOF\r\n'
     .. "echo hi > /opt/t/a15b\r\nEOF\r\n",
     want = { { op = "RUN", line = 1, cmd = 'printf "%s" ab     > /opt/t/a15' },
              { op = "RUN", line = 3, cmd = "echo hi > /opt/t/a15b\n" } } },
   -- A16: byte-order mark and wide encodings
   { "A16 BOM before an instruction", BOM .. "RUN echo ok > /opt/t/a16\n",
     want = { { op = "RUN", line = 1, col = 1,
                cmd = "echo ok > /opt/t/a16" } } },
   { "A16 BOM before a directive",
     BOM .. "# escape=`\nRUN printf %s x `\n  > /opt/t/a16b\n",
     want = { { op = "RUN", line = 2, cmd = "printf %s x   > /opt/t/a16b" } },
     doc = { escape = "`" } },
   { "A16 UTF-16 with BOM", "\xff\xfeR\0U\0N\0 \0e\0c\0h\0o\0\n\0",
     err = "CF:1:1: file is UTF-16 encoded; save it as UTF-8" },
   { "A16 UTF-16 big endian", "\xfe\xff\0R\0U\0N",
     err = "CF:1:1: file is UTF-16 encoded; save it as UTF-8" },
   { "A16 UTF-16 without BOM", "R\0U\0N\0 \0x\0",
     err = "CF:1:1: file is UTF-16 encoded; save it as UTF-8" },
   { "A16 UTF-32", "\xff\xfe\0\0R\0\0\0",
     err = "CF:1:1: file is UTF-32 encoded; save it as UTF-8" },
   -- A17: keywords are case-insensitive; tabs separate words
   { "A17 case and tabs",
     "from scratch\nenv Mode=lower\nRun printf '%s' \"$Mode\" > /opt/t/a17\n"
     .. "ENV\tT1=a\tT2=b\n"
     .. "RUN\tprintf\t'%s%s'\t\"$T1\"\t\"$T2\"\t>\t/opt/t/a17b\n"
     .. "workdir /opt/t/a17dir\nrUn pwd > /opt/t/a17pwd\n",
     want = { { op = "FROM", ignored = true },
              { op = "ENV", pairs = { { "Mode", "lower" } } },
              { op = "RUN", cmd = "printf '%s' \"$Mode\" > /opt/t/a17" },
              { op = "ENV", pairs = { { "T1", "a" }, { "T2", "b" } } },
              { op = "RUN", cmd = "printf\t'%s%s'\t\"$T1\"\t\"$T2\"\t>\t"
                .. "/opt/t/a17b" },
              { op = "WORKDIR", path = "/opt/t/a17dir" },
              { op = "RUN", line = 7, cmd = "pwd > /opt/t/a17pwd" } },
     env = { Mode = "lower", T1 = "a", T2 = "b" }, env_n = 3 },
   -- A19: ARG values reach expansions
   { "A19 ARG defaults",
     "ARG VERSION=1.2.3\nARG EMPTYDECL\n"
     .. "ENV V1=${VERSION:-unset} V2=${VERSION-unset} V3=${EMPTYDECL-unset}\n"
     .. "RUN printf '%s %s %s %s' \"$V1\" \"$V2\" \"$V3\" \"$VERSION\""
     .. " > /opt/t/a19\n",
     want = { { op = "ARG", name = "VERSION", default = "1.2.3" },
              { op = "ARG", name = "EMPTYDECL", default = NONE },
              { op = "ENV" }, { op = "RUN" } },
     env = { V1 = "1.2.3", V2 = "1.2.3", V3 = "unset", VERSION = "1.2.3" } },
   { "A19 ARG from --build-arg",
     "ARG VERSION=1.2.3\nARG EMPTYDECL\n"
     .. "ENV V1=${VERSION:-unset} V2=${VERSION-unset} V3=${EMPTYDECL-unset}\n",
     n = 3, buildargs = { VERSION = "2" },
     env = { V1 = "2", V2 = "2", V3 = "unset", VERSION = "2" } },

   -- Continuations, comments, lines and columns
   { "empty file", "", n = 0 },
   { "comments and blank lines only", "# one\n\n   \n\t# two\n", n = 0 },
   { "indented instruction column", "   RUN x\n\tENV A=1\n",
     want = { { op = "RUN", line = 1, col = 4 },
              { op = "ENV", line = 2, col = 2 } } },
   { "line numbers after continuations and comments",
     "# c\nRUN a \\\n# d\n  b\n\nENV X=1\n",
     want = { { op = "RUN", line = 2, cmd = "a   b" },
              { op = "ENV", line = 6 } } },
   { "comment ending in backslash does not continue", "# x \\\nRUN y\n",
     want = { { op = "RUN", line = 2, cmd = "y" } } },
   { "lone backslash line joins the next", "\\\nRUN x\n",
     want = { { op = "RUN", line = 2, col = 1, cmd = "x" } } },
   { "CR-only line endings", "RUN a \\\r  b\rENV A=1\r",
     want = { { op = "RUN", line = 1, cmd = "a   b" },
              { op = "ENV", line = 3 } } },
   { "mixed line endings", "RUN a\r\nRUN b\nRUN c\r",
     want = { { cmd = "a" }, { cmd = "b", line = 2 },
              { cmd = "c", line = 3 } } },
   { "trailing blanks are trimmed", "RUN echo hi  \t\n",
     want = { { cmd = "echo hi" } } },
   { "escaped backslash still continues (as BuildKit)", "RUN a\\\\\nb\n",
     want = { { cmd = "a\\b" } } },
   { "hash inside an instruction is not a comment", "RUN echo a # b\n",
     want = { { cmd = "echo a # b" } } },
   { "tab between keyword and arguments", "WORKDIR\t/x\n",
     want = { { op = "WORKDIR", path = "/x" } } },

   -- Parser directives
   { "escape directive with backtick", "# escape=`\nRUN a `\n  b\n",
     want = { { cmd = "a   b" } }, doc = { escape = "`" } },
   { "backslash is literal under backtick escape",
     "# escape=`\nWORKDIR C:\\data\nRUN dir C:\\ `\n /w\n",
     want = { { path = "C:\\data" }, { cmd = "dir C:\\  /w" } } },
   { "directive spaces and case", "#  ESCAPE = `\nRUN a `\nb\n",
     want = { { cmd = "a b" } }, doc = { escape = "`" } },
   { "directive after an instruction is a comment",
     "RUN a\n# escape=`\nRUN b \\\n c\n",
     want = { { cmd = "a" }, { cmd = "b  c" } }, doc = { escape = "\\" } },
   { "directive after a plain comment is a comment",
     "# hello\n# escape=`\nRUN b \\\n c\n",
     want = { { cmd = "b  c" } }, doc = { escape = "\\" } },
   { "directive after a blank line is a comment",
     "\n# escape=`\nRUN b \\\n c\n", want = { { cmd = "b  c" } } },
   { "syntax directive recorded", "# syntax=docker/dockerfile:1\nRUN x\n",
     n = 1, doc = { directives = { syntax = "docker/dockerfile:1" } } },
   { "invalid escape token", "# escape=x\nRUN a\n",
     err = "CF:1:1: invalid escape token 'x' does not match ` or \\" },
   { "duplicate escape directive", "# escape=`\n# escape=\\\n",
     err = "CF:2:1: only one escape parser directive can be used" },

   -- Unknown and ignored instructions
   { "unknown instruction", "RUN a\n\n  foo bar\n",
     err = "CF:3:3: unknown instruction: FOO" },
   { "unknown instruction from a broken continuation",
     "RUN echo one \\x\n    two\n", err = "CF:2:5: unknown instruction: TWO" },
   { "unknown instruction as a warning", "FOO bar\nRUN x\n",
     opts = { unknown = "warn" },
     want = { { op = "FOO", ignored = true, unknown = true },
              { op = "RUN" } },
     warnings = { "CF:1:1: warning: unknown instruction: FOO (ignored)" } },
   { "ignored instructions",
     "FROM ubuntu:24.04\nEXPOSE 80\nCMD [\"bash\"]\nENTRYPOINT x\n"
     .. "LABEL a=b\nVOLUME /v\nUSER root\nHEALTHCHECK NONE\n"
     .. "STOPSIGNAL SIGTERM\nONBUILD RUN x\nmaintainer me\n",
     want = { { op = "FROM", ignored = true, args = { "ubuntu:24.04" } },
              { op = "EXPOSE", ignored = true },
              { op = "CMD", ignored = true },
              { op = "ENTRYPOINT", ignored = true },
              { op = "LABEL", ignored = true },
              { op = "VOLUME", ignored = true },
              { op = "USER", ignored = true },
              { op = "HEALTHCHECK", ignored = true },
              { op = "STOPSIGNAL", ignored = true },
              { op = "ONBUILD", ignored = true },
              { op = "MAINTAINER", ignored = true, line = 11 } } },

   -- RUN
   { "RUN without a command", "RUN\n", err = "CF:1:1: RUN requires a command" },
   { "RUN with an empty exec array", "RUN []\n",
     err = "CF:1:5: RUN requires a command" },
   { "RUN exec form with JSON escapes",
     'RUN ["printf", "a\\"b\\\\c\\u00e9\\n", "\\ud83d\\ude00"]\n',
     want = { { exec = { "printf", 'a"b\\c\xc3\xa9\n', "\xf0\x9f\x98\x80" },
                cmd = NONE } } },
   { "RUN exec form across lines", 'RUN ["echo", \\\n  "x"]\n',
     want = { { exec = { "echo", "x" } } } },
   { "RUN JSON with a number is shell form", 'RUN ["a", 1]\n',
     want = { { cmd = '["a", 1]', exec = NONE } },
     warnings = { "CF:1:5: warning: RUN looks like exec form but is not a "
       .. "JSON array of strings; running it with the shell" } },
   { "RUN JSON with trailing text is shell form", 'RUN ["a"] b\n',
     want = { { cmd = '["a"] b' } },
     warnings = { "CF:1:5: warning: RUN looks like exec form but is not a "
       .. "JSON array of strings; running it with the shell" } },
   { "RUN flags are refused", "RUN --mount=type=cache,target=/x make\n",
     err = "CF:1:5: unknown flag: mount" },
   { "RUN heredoc after a command",
     "RUN python3 <<EOF\nprint(1)\n# kept\nEOF\nRUN y\n",
     want = { { cmd = "python3 <<EOF\nprint(1)\n# kept\nEOF" },
              { cmd = "y", line = 5 } } },
   { "RUN two heredocs on one line",
     "RUN cat <<A <<-B > /x\none\nA\n\ttwo\n\tB\n",
     want = { { cmd = "cat <<A <<-B > /x\none\nA\n\ttwo\nB" } } },
   { "RUN quoted heredoc delimiters", "RUN <<\"EOF\"\necho $HOME\nEOF\n"
     .. "RUN cat <<'X' | sort\nb\na\nX\n",
     want = { { cmd = "echo $HOME\n" },
              { cmd = "cat <<'X' | sort\nb\na\nX" } } },
   { "RUN heredoc with a shebang is a script",
     "RUN <<EOF\n#!/usr/bin/env python3\nprint(1)\nEOF\n",
     want = { { cmd = "#!/usr/bin/env python3\nprint(1)\n",
                script = "#!/usr/bin/env python3\nprint(1)\n" } } },
   { "RUN heredoc without a shebang has no script",
     "RUN <<EOF\necho x\nEOF\n", want = { { script = NONE } } },
   { "RUN heredoc with an empty body", "RUN <<EOF\nEOF\n",
     want = { { cmd = "" } } },
   { "RUN heredoc delimiter before a redirection",
     "RUN cat <<EOF>/tmp/x\nhi\nEOF\n",
     want = { { cmd = "cat <<EOF>/tmp/x\nhi\nEOF" } } },
   { "RUN quoted << is not a heredoc", "RUN echo \"<<EOF\" '<<X'\nRUN y\n",
     n = 2, want = { { cmd = "echo \"<<EOF\" '<<X'" } } },
   { "RUN shift operator is not a heredoc", "RUN echo $((1<<2))\n",
     want = { { cmd = "echo $((1<<2))", heredocs = NONE } } },
   { "RUN here-string is not a heredoc", "RUN cat <<<word\n",
     want = { { cmd = "cat <<<word" } } },
   { "RUN heredoc in a shell comment is ignored", "RUN echo hi # <<EOF\n",
     want = { { cmd = "echo hi # <<EOF" } } },
   { "RUN heredoc body lines are never instructions",
     "RUN <<EOF\nFOO bar\n  ENV x\nEOF\n",
     want = { { cmd = "FOO bar\n  ENV x\n" } } },
   { "RUN <<- strips tabs from body, not spaces",
     "RUN <<-EOF\n\t\tx\n  y\n\tEOF\n", want = { { cmd = "x\n  y\n" } } },
   { "RUN heredoc under a continued line",
     "RUN cat \\\n  <<EOF\nbody\nEOF\nRUN z\n",
     want = { { cmd = "cat   <<EOF\nbody\nEOF" }, { line = 5 } } },

   -- ENV
   { "ENV without arguments", "ENV\n",
     err = "CF:1:1: ENV requires at least one argument" },
   { "ENV name without a value", "ENV K\n",
     err = "CF:1:5: ENV K has no value (write K= to set it empty)" },
   { "ENV word without =", "ENV A=1 B\n",
     err = "CF:1:9: can't find = in B; write NAME=VALUE" },
   { "ENV blank name", "ENV =x\n", err = "CF:1:5: ENV names can not be blank" },
   { "ENV unmatched single quote", "ENV A='x\n",
     err = "CF:1:7: unmatched single quote" },
   { "ENV error column on a continuation line",
     "ENV A=1 \\\n    B=x${y\n", err = "CF:2:8: syntax error: missing '}'" },
   { "ENV flag refused", "ENV --x=1 A=b\n", err = "CF:1:5: unknown flag: x" },
   { "ENV substitution in a name", "ENV $X=1\n",
     err = "CF:1:5: substitution in an ENV name is not supported" },
   { "ENV value with = inside", "ENV URL=a=b=c\n",
     want = { { pairs = { { "URL", "a=b=c" } } } } },
   { "ENV same-line references see the previous value",
     "ENV A=1\nENV A=2 B=$A C=${A}x\n", env = { A = "2", B = "1", C = "1x" } },
   { "ENV escaped dollar", "ENV A=1 B=\\$A C=\"\\$A\"\n",
     env = { B = "$A", C = "$A" } },
   { "ENV name that is shell code", 'ENV "X;echo hi;Y"=1\n',
     err = "CF:1:5: ENV: invalid variable name 'X;echo hi;Y'"
        .. NAME_RULE },
   { "ENV name with a dash", "ENV A=1 my-var=2\n",
     err = "CF:1:9: ENV: invalid variable name 'my-var'" .. NAME_RULE },
   { "ENV legacy form name starting with a digit", "ENV 9LIVES yes\n",
     err = "CF:1:5: ENV: invalid variable name '9LIVES'" .. NAME_RULE },
   { "ENV quoted valid name", "ENV \"_ok9\"=1\n",
     want = { { pairs = { { "_ok9", "1" } } } } },

   -- ARG
   { "ARG without default", "ARG A\n",
     want = { { op = "ARG", name = "A", default = NONE } } },
   { "ARG several on one line", "ARG A=1 B=${A}x\n",
     want = { { op = "ARG", name = "A", default = "1", line = 1 },
              { op = "ARG", name = "B", default = "${A}x", line = 1 } },
     env = { A = "1", B = "1x" } },
   { "ARG without arguments", "ARG\n",
     err = "CF:1:1: ARG requires at least one argument" },
   { "ARG blank name", "ARG =1\n", err = "CF:1:5: ARG names can not be blank" },
   { "ARG bad default", "ARG V=${A\n",
     err = "CF:1:7: syntax error: missing '}'" },
   { "ARG name that is shell code", "ARG A;id=1\n",
     err = "CF:1:5: ARG: invalid variable name 'A;id'" .. NAME_RULE },
   { "ARG name with a space escaped", "ARG A\\ B\n",
     err = "CF:1:5: ARG: invalid variable name 'A\\ B'" .. NAME_RULE },

   -- hostile input
   { "invalid UTF-8", "RUN a\nRUN echo \xff\n",
     err = "CF:2:10: not valid UTF-8" },
   { "substitutions nested too deep", "ENV A=" .. ("${A:-"):rep(1000) .. "\n",
     err = "CF:1:" .. (7 + 5 * 64) .. ": substitutions nested more than "
        .. "64 deep" },
   { "substitutions nested 64 deep", "ENV A=" .. ("${A:-"):rep(64) .. "x"
        .. ("}"):rep(64) .. "\n", env = { A = "x" } },

   -- WORKDIR, SHELL, SNAPSHOT
   { "WORKDIR keeps the raw path", "WORKDIR $HOME/my dir\n",
     want = { { op = "WORKDIR", path = "$HOME/my dir" } } },
   { "WORKDIR without a path", "WORKDIR\n",
     err = "CF:1:1: WORKDIR requires exactly one argument" },
   { "WORKDIR bad substitution", "WORKDIR /a/${B:?x}\n",
     err = "CF:1:12: unsupported modifier (:?) in substitution" },
   { "SHELL exec array", 'SHELL ["/bin/bash", "-eu", "-c"]\n',
     want = { { op = "SHELL", argv = { "/bin/bash", "-eu", "-c" } } } },
   { "SHELL not JSON", "SHELL /bin/bash -c\n",
     err = 'CF:1:7: SHELL requires a JSON array of strings, as in '
       .. 'SHELL ["/bin/bash", "-c"]' },
   { "SHELL empty array", "SHELL []\n",
     err = 'CF:1:7: SHELL requires a JSON array of strings, as in '
       .. 'SHELL ["/bin/bash", "-c"]' },
   { "SNAPSHOT a path", "SNAPSHOT /var/cache/pip\n",
     want = { { op = "SNAPSHOT", path = "/var/cache/pip", all = false } } },
   { "SNAPSHOT --all", "SNAPSHOT --all /opt/x\n",
     want = { { op = "SNAPSHOT", path = "/opt/x", all = true } } },
   { "SNAPSHOT --all=false", "SNAPSHOT --all=false /opt/x\n",
     want = { { all = false } } },
   { "SNAPSHOT needs one path", "SNAPSHOT a b\n",
     err = "CF:1:1: SNAPSHOT needs one PATH" },
   { "SNAPSHOT without a path", "SNAPSHOT --all\n",
     err = "CF:1:1: SNAPSHOT needs one PATH" },
   { "SNAPSHOT unknown flag", "SNAPSHOT --al /x\n",
     err = "CF:1:10: unknown flag: al" },
   { "SNAPSHOT bad boolean", "SNAPSHOT --all=maybe /x\n",
     err = "CF:1:10: expecting boolean value for flag all, not: maybe" },

   -- FETCH
   { "FETCH with every flag",
     "FETCH --sha256=" .. ("AB"):rep(32) .. " --strip-components=1 "
     .. "--extract=no --chmod=0755 https://example.invalid/t.tgz /opt/t\n",
     want = { { op = "FETCH", src = "https://example.invalid/t.tgz",
                dest = "/opt/t", flags = { sha256 = ("ab"):rep(32),
                strip_components = 1, extract = "no", chmod = "0755" } } } },
   { "FETCH defaults", "FETCH github:owner/repo@v1 /opt/tool\n",
     want = { { src = "github:owner/repo@v1", dest = "/opt/tool",
                flags = { extract = "auto", strip_components = 0 } } } },
   { "FETCH keeps raw words", "FETCH https://x.invalid/$V/a \"/opt/my tool\"\n",
     want = { { src = "https://x.invalid/$V/a", dest = '"/opt/my tool"' } } },
   { "FETCH one argument", "FETCH https://x.invalid/a\n",
     err = "CF:1:1: FETCH needs SRC and DEST" },
   { "FETCH three arguments", "FETCH a b c\n",
     err = "CF:1:1: FETCH needs SRC and DEST" },
   { "FETCH short sha256", "FETCH --sha256=abc a b\n",
     err = "CF:1:7: FETCH --sha256 needs 64 hex digits" },
   { "FETCH sha256 without value", "FETCH --sha256 a b\n",
     err = "CF:1:7: missing a value on flag: sha256" },
   { "FETCH bad extract", "FETCH --extract=zip a b\n",
     err = "CF:1:7: FETCH --extract must be auto or no" },
   { "FETCH bad chmod", "FETCH --chmod=u+x a b\n",
     err = "CF:1:7: FETCH --chmod needs an octal mode" },
   { "FETCH bad strip-components", "FETCH --strip-components=-1 a b\n",
     err = "CF:1:7: FETCH --strip-components needs a number" },
   { "FETCH duplicate flag", "FETCH --extract=no --extract=no a b\n",
     err = "CF:1:20: duplicate flag specified: extract" },
   { "FETCH bad substitution in DEST", "FETCH a /opt/${X\n",
     err = "CF:1:14: syntax error: missing '}'" },

   -- COPY and ADD
   { "COPY several sources", "COPY a b* /dest/\n",
     want = { { op = "COPY", srcs = { "a", "b*" }, dest = "/dest/",
                flags = {} } } },
   { "COPY JSON form", 'COPY ["my file", "/d e/"]\n',
     want = { { srcs = { "my file" }, dest = "/d e/" } } },
   { "COPY flags", "COPY --chmod=0644 --chown=1000:1000 --link a /b\n",
     want = { { flags = { chmod = "0644", chown = "1000:1000",
                          link = "true" } } } },
   { "COPY --from", "COPY --from=build /a /b\n",
     err = "CF:1:6: COPY --from is not supported: clayer has no build stages" },
   { "COPY one argument", "COPY a\n",
     err = "CF:1:1: COPY needs SRC... and DEST" },
   { "COPY bad chmod", "COPY --chmod=rwx a b\n",
     err = "CF:1:6: COPY --chmod needs an octal mode" },
   { "COPY heredoc refused", "COPY <<EOF /x\n",
     err = "CF:1:6: COPY does not take heredocs" },
   { "COPY --checksum is only for ADD", "COPY --checksum=sha256:ab a b\n",
     err = "CF:1:6: unknown flag: checksum" },
   { "ADD with a URL and checksum",
     "ADD --checksum=sha256:ab https://x.invalid/a.tgz /opt/\n",
     want = { { op = "ADD", srcs = { "https://x.invalid/a.tgz" },
                dest = "/opt/", flags = { checksum = "sha256:ab" } } } },
   { "ADD quoted source keeps its quotes raw", "ADD \"a b\" /c\n",
     want = { { srcs = { '"a b"' }, dest = "/c" } } },
}

-- Rows: [1] raw, [2] vars, then want or err (and pos), esc.
local EXPAND = {
   { "$A", { A = "x" }, want = "x" },
   { "${A}", { A = "x" }, want = "x" },
   { "a$Ab", { A = "x" }, want = "a" },
   { "$A$B", { A = "x", B = "y" }, want = "xy" },
   { "$1x", {}, want = "x" },
   { "$", {}, want = "$" },
   { "a$ b$/", {}, want = "a$ b$/" },
   { "'$A'", { A = "x" }, want = "$A" },
   { '"$A"', { A = "x" }, want = "x" },
   { '"a\\"b"', {}, want = 'a"b' },
   { '"a\\$A"', { A = "x" }, want = "a$A" },
   { '"a\\nb"', {}, want = "a\\nb" },
   { '"a\\\\b"', {}, want = "a\\b" },
   { "a\\ b", {}, want = "a b" },
   { "a\\", {}, want = "a" },
   { "a   b\tc", {}, want = "a   b\tc" },
   { "it'\"s'", {}, want = 'it"s' },
   { "${A:-d}", { A = "" }, want = "d" },
   { "${A:-d}", {}, want = "d" },
   { "${A:-d}", { A = "v" }, want = "v" },
   { "${A-d}", { A = "" }, want = "" },
   { "${A-d}", {}, want = "d" },
   { "${A:+a}", { A = "" }, want = "" },
   { "${A:+a}", { A = "v" }, want = "a" },
   { "${A+a}", { A = "" }, want = "a" },
   { "${A+a}", {}, want = "" },
   { "${A:-${B:-c}}", {}, want = "c" },
   { "${A:-$B}", { B = "b" }, want = "b" },
   { "${A:-'x y'}", {}, want = "x y" },
   { "${A:-}", {}, want = "" },
   { "\xc3\xa9$A\xc3\xa9", { A = "x" }, want = "\xc3\xa9x\xc3\xa9" },
   { "a`$b", {}, esc = "`", want = "a$b" },
   { "C:\\x", {}, esc = "`", want = "C:\\x" },
   { "${A:?}", {}, err = "unsupported modifier (:?) in substitution", pos = 1 },
   { "${A#p}", {}, err = "unsupported modifier (#) in substitution", pos = 1 },
   { "${A%p}", {}, err = "unsupported modifier (%) in substitution", pos = 1 },
   { "${A/x/y}", {}, err = "unsupported modifier (/) in substitution",
     pos = 1 },
   { "${A=x}", {}, err = "unsupported modifier (=) in substitution", pos = 1 },
   { "${}", {}, err = "syntax error: bad substitution", pos = 1 },
   { "${:-x}", {}, err = "syntax error: bad substitution", pos = 1 },
   { "x${{A}}", {}, err = "syntax error: bad substitution", pos = 2 },
   { "${", {}, err = "syntax error: missing '}'", pos = 1 },
   { "ab${A", {}, err = "syntax error: missing '}'", pos = 3 },
   { "${A:-x", {}, err = "syntax error: missing '}'", pos = 1 },
   { "${A:", {}, err = "syntax error: missing '}'", pos = 1 },
   { "'abc", {}, err = "unmatched single quote", pos = 1 },
   { 'x"abc', {}, err = "unmatched double quote", pos = 2 },
   { '"abc\\', {}, err = "unmatched double quote", pos = 1 },
}

-- Apply ENV and ARG in order as the build does; return the variables.
local function run_env(doc, buildargs)
   local vars = {}
   for _, ins in ipairs(doc.instructions) do
      if ins.op == "ENV" then
         local before = {}
         for k, v in pairs(vars) do before[k] = v end
         for _, p in ipairs(ins.pairs) do
            vars[p[1]] = assert(cf.expand(p[2], before, doc.escape))
         end
      elseif ins.op == "ARG" then
         local v = buildargs and buildargs[ins.name]
         if v == nil and ins.default then
            v = assert(cf.expand(ins.default, vars, doc.escape))
         end
         vars[ins.name] = v
      end
   end
   return vars
end

local function count(t)
   local n = 0
   for _ in pairs(t) do n = n + 1 end
   return n
end

local function check_case(c)
   local doc, err = cf.parse(c[2], "CF", c.opts)
   if c.err then
      lu.assertNil(doc, c[1])
      lu.assertEquals(err, c.err)
      return
   end
   lu.assertNotNil(doc, err)
   local want = c.want or {}
   if c.n or c.want then
      lu.assertEquals(#doc.instructions, c.n or #want, "instruction count")
   end
   for i, w in ipairs(want) do
      local got = doc.instructions[i]
      for k, v in pairs(w) do
         local what = string.format("instruction %d %s", i, k)
         if v == NONE then
            lu.assertNil(got[k], what)
         else
            lu.assertEquals(got[k], v, what)
         end
      end
   end
   lu.assertEquals(doc.warnings, c.warnings or {})
   for k, v in pairs(c.doc or {}) do lu.assertEquals(doc[k], v, k) end
   if c.env then
      local vars = run_env(doc, c.buildargs)
      for k, v in pairs(c.env) do lu.assertEquals(vars[k], v, "$" .. k) end
      if c.env_n then lu.assertEquals(count(vars), c.env_n) end
   end
end

TestContainerfileCases = {}

for i, c in ipairs(CASES) do
   local slug = c[1]:lower():gsub("[^%w]+", "_")
   TestContainerfileCases[string.format("test_%03d_%s", i, slug)] =
      function() check_case(c) end
end

TestContainerfileExpand = {}

function TestContainerfileExpand:test_table()
   for _, c in ipairs(EXPAND) do
      local got, err, pos = cf.expand(c[1], c[2], c.esc)
      if c.err then
         lu.assertNil(got, c[1])
         lu.assertEquals(err, c.err, c[1])
         lu.assertEquals(pos, c.pos, c[1])
      else
         lu.assertEquals(got, c.want, c[1])
      end
   end
end

function TestContainerfileExpand:test_default_escape_and_vars()
   lu.assertEquals(cf.expand("a\\$B"), "a$B")
   lu.assertEquals(cf.expand("$B"), "")
end

function TestContainerfileExpand:test_misuse_raises()
   lu.assertError(cf.expand, nil, {})
end

-- The parse-level details a table row cannot express.
TestContainerfile = {}

function TestContainerfile:tearDown()
   h.cleanup()
end

function TestContainerfile:test_case_table_is_large()
   lu.assertTrue(#CASES >= 80, tostring(#CASES))
end

function TestContainerfile:test_exec_form_has_no_cmd()
   local doc = assert(cf.parse('RUN ["a"]\nRUN <<EOF\nx\nEOF\n', "CF"))
   lu.assertNil(doc.instructions[1].cmd)
   lu.assertNil(doc.instructions[2].exec)
   lu.assertNil(doc.instructions[2].script)
   lu.assertEquals(doc.instructions[2].heredocs[1].name, "EOF")
end

function TestContainerfile:test_a15_no_carriage_return_anywhere()
   local text = 'RUN printf "%s" ab \\\r\n    > /opt/t/a15\r\nRUN <<EOF\r\n'
      .. "echo hi > /opt/t/a15b\r\nEOF\r\nENV A=1\r\n"
   local doc = assert(cf.parse(text, "CF"))
   lu.assertEquals(#doc.instructions, 3)
   for _, ins in ipairs(doc.instructions) do
      for _, v in ipairs(ins.args) do lu.assertNil(v:find("\r")) end
      lu.assertNil((ins.cmd or ""):find("\r"))
   end
   lu.assertEquals(doc.instructions[3].pairs, { { "A", "1" } })
end

function TestContainerfile:test_default_filename_and_options()
   local doc, err = cf.parse("NOPE\n")
   lu.assertNil(doc)
   lu.assertEquals(err, "Containerfile:1:1: unknown instruction: NOPE")
   doc, err = cf.parse("NOPE\n", "X", { unknown = "error" })
   lu.assertNil(doc)
   lu.assertEquals(err, "X:1:1: unknown instruction: NOPE")
end

function TestContainerfile:test_read_utf8_and_bom()
   local dir = h.tmpdir()
   h.write(dir .. "/Containerfile", BOM .. "RUN echo ok\n")
   lu.assertEquals(cf.read(dir .. "/Containerfile"), BOM .. "RUN echo ok\n")
end

function TestContainerfile:test_read_refuses_utf16()
   local dir = h.tmpdir()
   local path = dir .. "/Containerfile.utf16"
   h.sh("printf 'RUN echo hi\\n' | iconv -t UTF-16 > " .. h.q(path))
   local text, err = cf.read(path)
   lu.assertNil(text)
   lu.assertEquals(err, path .. ":1:1: file is UTF-16 encoded; save it as "
      .. "UTF-8")
   h.write(path, "\0\0\xfe\xff\0\0\0R")
   text, err = cf.read(path)
   lu.assertNil(text)
   lu.assertEquals(err, path .. ":1:1: file is UTF-32 encoded; save it as "
      .. "UTF-8")
end

function TestContainerfile:test_read_missing_file()
   local dir = h.tmpdir()
   local text, err = cf.read(dir .. "/nope")
   lu.assertNil(text)
   lu.assertEquals(err, dir .. "/nope: No such file or directory")
   text, err = cf.read(dir)
   lu.assertNil(text)
   lu.assertStrContains(err, dir .. ": ")
end

function TestContainerfile:test_whole_file_parsed_before_anything()
   -- an error on the last line means no instructions at all come back
   local doc, err = cf.parse("RUN a\nRUN b\nENV V=${A\n", "CF")
   lu.assertNil(doc)
   lu.assertEquals(err, "CF:3:7: syntax error: missing '}'")
end

function TestContainerfile:test_args_for_display()
   local doc = assert(cf.parse("ENV A=1 B=\"x y\"\nCOPY a b\nENV K v w\n",
      "CF"))
   lu.assertEquals(doc.instructions[1].args, { "A=1", 'B="x y"' })
   lu.assertEquals(doc.instructions[2].args, { "a", "b" })
   lu.assertEquals(doc.instructions[3].args, { "K", "v w" })
end
