-- A boot script: restore the environment, building it on a cache miss.
-- Run it with `clayer-lua boot.lua`, then `eval "$(clayer env)"`.
local clayer = require "clayer"

local cache = os.getenv("CLAYER_CACHE") or "dir:/var/cache/clayer"
local base = assert(clayer.layer { file = "Containerfile", cache = cache })
local report, err = base:restore_or_build()
if not report then
   io.stderr:write("boot: ", err, "\n")
   os.exit(1)
end
print(report.action, report.tag)
