#!/bin/sh
# Source this from a shell profile: restore the layers, then export their
# environment.  A Lua process cannot change its parent shell, so the
# environment comes through `clayer env`.
cd "$(dirname "$0")" || return 1
clayer-lua boot.lua || echo "clayer: boot failed; continuing without layers" >&2
eval "$(clayer env)"
