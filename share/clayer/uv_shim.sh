# uv_shim.sh FILE: record installs into the Containerfile FILE.
#
#   source /path/to/share/clayer/uv_shim.sh Containerfile
#
# does what the original tool's uv_shim.sh did, for bash and zsh: the
# same as  eval "$(clayer shim Containerfile)"  (see docs/SHIM.md).  The
# clayer command is $CLAYER, else `clayer` on PATH, else the one installed
# beside this file (PREFIX/bin, or build/ in a source tree).
if [ $# -lt 1 ]; then
  echo "usage: source uv_shim.sh FILE" >&2
  return 2 2>/dev/null || exit 2
fi
__clayer_cmd=${CLAYER:-}
if [ -z "$__clayer_cmd" ]; then
  __clayer_cmd=$(command -v clayer 2>/dev/null)
fi
if [ -z "$__clayer_cmd" ]; then
  if [ -n "${ZSH_VERSION:-}" ]; then
    eval '__clayer_here=${${(%):-%x}:A:h}'
  else
    __clayer_here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
  fi
  for __clayer_c in "$__clayer_here/../../bin/clayer" \
                    "$__clayer_here/../../build/clayer"; do
    if [ -x "$__clayer_c" ]; then __clayer_cmd=$__clayer_c; break; fi
  done
  unset __clayer_here __clayer_c
fi
if [ -z "$__clayer_cmd" ]; then
  echo "uv_shim.sh: clayer not found (set CLAYER or PATH)" >&2
  unset __clayer_cmd
  return 1 2>/dev/null || exit 1
fi
eval "$("$__clayer_cmd" shim "$1")"
unset __clayer_cmd
