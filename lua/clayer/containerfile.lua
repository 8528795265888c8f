--- The Containerfile language: reading, parsing, word expansion, the key.
-- Parsing follows BuildKit's Dockerfile parser (continuations, comments,
-- parser directives, heredocs, exec form); expansion follows its shell
-- lexer; the key is the original tool's (DESIGN §5).
local hash = require "clayer.hash"

local M = {}

local IGNORED = {
   FROM = true, EXPOSE = true, CMD = true, ENTRYPOINT = true, LABEL = true,
   VOLUME = true, USER = true, HEALTHCHECK = true, STOPSIGNAL = true,
   ONBUILD = true, MAINTAINER = true,
}

-- {==================================================================
-- Whitespace
-- ===================================================================

-- Multi-byte characters Go's unicode.IsSpace and Python's str.isspace
-- both accept (U+0085, U+00A0, U+1680, U+2000-U+200A, U+2028, U+2029,
-- U+202F, U+205F, U+3000), as UTF-8 byte strings.
local WIDE_SPACE = {
   ["\xc2\x85"] = true, ["\xc2\xa0"] = true, ["\xe1\x9a\x80"] = true,
   ["\xe2\x80\xa8"] = true, ["\xe2\x80\xa9"] = true,
   ["\xe2\x80\xaf"] = true, ["\xe2\x81\x9f"] = true,
   ["\xe3\x80\x80"] = true,
}
for b = 0x80, 0x8a do WIDE_SPACE["\xe2\x80" .. string.char(b)] = true end

-- Byte length of the white-space character at s[i], or 0 (Go's IsSpace).
local function space_len(s, i)
   local b = s:byte(i)
   if not b then return 0 end
   if b == 32 or (b >= 9 and b <= 13) then return 1 end
   if b == 0xc2 and WIDE_SPACE[s:sub(i, i + 1)] then return 2 end
   if (b == 0xe1 or b == 0xe2 or b == 0xe3)
      and WIDE_SPACE[s:sub(i, i + 2)] then
      return 3
   end
   return 0
end

-- Offset of the first non-space byte of s at or after i (#s + 1 if none).
local function skip_space(s, i)
   local n = space_len(s, i)
   while n > 0 do
      i = i + n
      n = space_len(s, i)
   end
   return i
end

-- s without trailing white space.
local function rtrim(s)
   local last = 0
   local i = 1
   while i <= #s do
      local n = space_len(s, i)
      if n == 0 then
         last = i
         n = 1
      end
      i = i + n
   end
   -- 'last' is a byte of the last non-space character
   if last == 0 then return "" end
   local tail = s:find("[^\x80-\xbf]", last + 1) or #s + 1
   return s:sub(1, tail - 1)
end

-- }==================================================================

-- {==================================================================
-- Word expansion (BuildKit shell/lex.go, ProcessWord)
-- ===================================================================

local SPECIAL_PARAM = {
   ["@"] = true, ["*"] = true, ["#"] = true, ["?"] = true, ["-"] = true,
   ["$"] = true, ["!"] = true, ["0"] = true,
}

local function lex_fail(pos, msg)
   error({ lex = msg, pos = pos }, 0)
end

-- How deep ${V:-${W:-...}} may nest (a bound on the lexer's recursion).
M.MAX_NESTING = 64

-- The lexer state: st.s the word, st.i the next byte, st.vars, st.esc.
local process

local function read_name(st)
   local s, i = st.s, st.i
   local c = s:sub(i, i)
   local j
   if c:match("^%d$") then
      j = s:find("[^%d]", i) or #s + 1
   elseif SPECIAL_PARAM[c] then
      j = i + 1
   else
      j = s:find("[^%w_]", i) or #s + 1
   end
   st.i = j
   return s:sub(i, j - 1)
end

local function value_of(st, name)
   local v = st.vars[name]
   if v == nil then return nil end
   return tostring(v)
end

local function dollar(st)
   local s, start = st.s, st.i
   st.i = st.i + 1
   if s:sub(st.i, st.i) ~= "{" then
      local name = read_name(st)
      if name == "" then return "$" end
      return value_of(st, name) or ""
   end
   st.i = st.i + 1
   local c = s:sub(st.i, st.i)
   if c == "" then lex_fail(start, "syntax error: missing '}'") end
   local name = c:match("[{}:]") and "" or read_name(st)
   if name == "" then lex_fail(start, "syntax error: bad substitution") end
   local op = s:sub(st.i, st.i)
   st.i = st.i + 1
   if op == "}" then return value_of(st, name) or "" end
   if op == "" then lex_fail(start, "syntax error: missing '}'") end
   local colon = op == ":"
   if colon then
      op = s:sub(st.i, st.i)
      st.i = st.i + 1
      if op == "" then lex_fail(start, "syntax error: missing '}'") end
   end
   if op ~= "-" and op ~= "+" then
      lex_fail(start, "unsupported modifier (" .. (colon and ":" or "")
         .. op .. ") in substitution")
   end
   st.depth = (st.depth or 0) + 1
   if st.depth > M.MAX_NESTING then
      lex_fail(start, ("substitutions nested more than %d deep")
         :format(M.MAX_NESTING))
   end
   local word = process(st, "}", start)
   st.depth = st.depth - 1
   local v = value_of(st, name)
   local has = v ~= nil and not (colon and v == "")
   if op == "-" then return has and v or word end
   return has and word or ""
end

local function single_quote(st)
   local start = st.i
   local j = st.s:find("'", start + 1, true)
   if not j then lex_fail(start, "unmatched single quote") end
   st.i = j + 1
   return st.s:sub(start + 1, j - 1)
end

local function double_quote(st)
   local s, start, out = st.s, st.i, {}
   st.i = st.i + 1
   while true do
      local c = s:sub(st.i, st.i)
      if c == "" then lex_fail(start, "unmatched double quote") end
      if c == '"' then
         st.i = st.i + 1
         return table.concat(out)
      elseif c == "$" then
         out[#out + 1] = dollar(st)
      else
         st.i = st.i + 1
         if c == st.esc then
            local nx = s:sub(st.i, st.i)
            if nx == '"' or nx == "$" or nx == st.esc then
               c = nx
               st.i = st.i + 1
            elseif nx == "" then
               c = ""
            end
         end
         out[#out + 1] = c
      end
   end
end

-- Process st.s from st.i up to 'stop' (consumed) or the end of the word.
-- 'opened' is where the construct waiting for 'stop' began.
function process(st, stop, opened)
   local s, out = st.s, {}
   while st.i <= #s do
      local c = s:sub(st.i, st.i)
      if c == stop then
         st.i = st.i + 1
         return table.concat(out)
      elseif c == "'" then
         out[#out + 1] = single_quote(st)
      elseif c == '"' then
         out[#out + 1] = double_quote(st)
      elseif c == "$" then
         out[#out + 1] = dollar(st)
      else
         st.i = st.i + 1
         if c == st.esc then
            c = s:sub(st.i, st.i)    -- an escape at the end vanishes
            st.i = st.i + 1
         end
         out[#out + 1] = c
      end
   end
   if stop then lex_fail(opened, "syntax error: missing '}'") end
   return table.concat(out)
end

--- Expand one word as Docker does for ENV, ARG, COPY, WORKDIR...:
-- quote removal, escapes, and $V ${V} ${V:-w} ${V-w} ${V:+w} ${V+w}.
-- @param raw the word as written
-- @param vars name -> value (nil: unset)
-- @param escape the escape character (default "\")
-- @return the expanded word, or nil, message, byte offset in raw
function M.expand(raw, vars, escape)
   assert(type(raw) == "string", "expand: raw must be a string")
   local st = { s = raw, i = 1, vars = vars or {}, esc = escape or "\\" }
   local ok, res = pcall(process, st, nil, 1)
   if ok then return res end
   if type(res) == "table" and res.lex then return nil, res.lex, res.pos end
   error(res, 0)
end

-- }==================================================================

-- {==================================================================
-- JSON arrays of strings (exec form)
-- ===================================================================

local JSON_ESC = {
   ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f",
   n = "\n", r = "\r", t = "\t",
}

-- Decode a JSON string starting at s[i] == '"'; return it and the offset
-- after it, or nil.
local function json_string(s, i)
   local out = {}
   i = i + 1
   while true do
      local j = s:find('[\0-\31"\\]', i)
      if not j then return nil end
      out[#out + 1] = s:sub(i, j - 1)
      local c = s:sub(j, j)
      if c == '"' then return table.concat(out), j + 1 end
      if c ~= "\\" then return nil end   -- a raw control character
      local e = s:sub(j + 1, j + 1)
      if JSON_ESC[e] then
         out[#out + 1] = JSON_ESC[e]
         i = j + 2
      elseif e == "u" then
         local hex = s:match("^%x%x%x%x", j + 2)
         if not hex then return nil end
         local cp = tonumber(hex, 16)
         i = j + 6
         if cp >= 0xd800 and cp <= 0xdbff then
            local lo = s:match("^\\u(%x%x%x%x)", i)
            lo = lo and tonumber(lo, 16)
            if lo and lo >= 0xdc00 and lo <= 0xdfff then
               cp = 0x10000 + (cp - 0xd800) * 0x400 + (lo - 0xdc00)
               i = i + 6
            else
               cp = 0xfffd
            end
         elseif cp >= 0xdc00 and cp <= 0xdfff then
            cp = 0xfffd
         end
         out[#out + 1] = utf8.char(cp)
      else
         return nil
      end
   end
end

-- The strings of a JSON array of strings, or nil if s is anything else.
local function json_strings(s)
   local ws = "^[ \t\n\r]*()"
   local i = s:match(ws, 1)
   if s:sub(i, i) ~= "[" then return nil end
   local list = {}
   i = s:match(ws, i + 1)
   if s:sub(i, i) == "]" then
      i = i + 1
   else
      while true do
         if s:sub(i, i) ~= '"' then return nil end
         local str
         str, i = json_string(s, i)
         if not str then return nil end
         list[#list + 1] = str
         i = s:match(ws, i)
         local c = s:sub(i, i)
         i = s:match(ws, i + 1)
         if c == "]" then break end
         if c ~= "," then return nil end
      end
   end
   if s:match(ws, i) ~= #s + 1 then return nil end
   return list
end

-- }==================================================================

-- {==================================================================
-- Words and flags (BuildKit parser/line_parsers.go)
-- ===================================================================

-- Split s into raw words (quotes and escapes kept), each {text, pos}.
-- (s never ends with an escape character: that would be a continuation.)
local function split_words(s, esc)
   local words = {}
   local i, n = 1, #s
   while true do
      i = skip_space(s, i)
      if i > n then return words end
      local start, quote = i, nil
      while i <= n do
         local c = s:sub(i, i)
         if not quote and space_len(s, i) > 0 then break end
         if quote and c == quote then
            quote = nil
         elseif not quote and (c == "'" or c == '"') then
            quote = c
         elseif c == esc and quote ~= "'" then
            i = i + 1
         end
         i = i + 1
      end
      words[#words + 1] = { text = s:sub(start, math.min(i, n + 1) - 1),
                            pos = start }
   end
end

-- Split leading "--flag[=value]" words off s: return the flags as
-- {text, pos} (quotes removed) and the offset where the rest begins.
local function split_flags(s)
   local flags = {}
   local i = 1
   while true do
      i = skip_space(s, i)
      if s:sub(i, i + 1) ~= "--" then return flags, i end
      local start, out, quote = i, {}, nil
      while i <= #s do
         local c = s:sub(i, i)
         if not quote and space_len(s, i) > 0 then break end
         if quote and c == quote then
            quote = nil
         elseif not quote and (c == "'" or c == '"') then
            quote = c
         else
            if c == "\\" and i < #s then
               i = i + 1
               c = s:sub(i, i)
            elseif c == "\\" then
               c = ""
            end
            out[#out + 1] = c
         end
         i = i + 1
      end
      local text = table.concat(out)
      if text == "--" then return flags, skip_space(s, i) end
      flags[#flags + 1] = { text = text, pos = start }
   end
end

-- }==================================================================

-- {==================================================================
-- Heredocs
-- ===================================================================

-- The name of a heredoc delimiter word starting at s[i]: quotes and
-- escapes removed, ending at blanks or shell operators. Returns the name,
-- whether it was quoted, and the offset of its last byte.
local function heredoc_name(s, i)
   local out, quoted = {}, false
   while i <= #s do
      local c = s:sub(i, i)
      if space_len(s, i) > 0 or c:match("[<>|&;()]") then break end
      if c == "'" or c == '"' then
         local j = s:find(c, i + 1, true)
         if not j then return nil end
         out[#out + 1] = s:sub(i + 1, j - 1)
         quoted, i = true, j
      elseif c == "\\" then
         out[#out + 1] = s:sub(i + 1, i + 1)
         quoted, i = true, i + 1
      else
         out[#out + 1] = c
      end
      i = i + 1
   end
   return table.concat(out), quoted, i - 1
end

-- The heredocs a shell command line opens, in order: each
-- {name, chomp, quoted, pos, stop}. Like BuildKit, only a word that
-- starts with [N]<< counts; quoted text and comments are skipped.
local function find_heredocs(s)
   local docs = {}
   local i, at_word = 1, true
   while i <= #s do
      local c = s:sub(i, i)
      local sp = space_len(s, i)
      local found
      if sp > 0 or c:match("[;&|]") then
         i, at_word = i + math.max(sp, 1), true
         goto next
      end
      if at_word and c == "#" then break end
      if at_word then
         local _, e, dash = s:find("^%d*<<(%-?)", i)
         if e and s:sub(e + 1, e + 1) ~= "<" then
            local name, quoted, stop = heredoc_name(s, e + 1)
            if name and name ~= "" then
               found = { name = name, chomp = dash == "-", quoted = quoted,
                         pos = i, stop = stop }
               docs[#docs + 1] = found
               i, at_word = stop + 1, false
            end
         end
      end
      if not found then
         at_word = false
         if c == "'" then
            i = (s:find("'", i + 1, true) or #s) + 1
         elseif c == '"' then
            local j = i + 1
            while j <= #s and s:sub(j, j) ~= '"' do
               j = j + (s:sub(j, j) == "\\" and 2 or 1)
            end
            i = j + 1
         elseif c == "\\" then
            i = i + 2
         else
            i = i + 1
         end
      end
      ::next::
   end
   return docs
end

-- }==================================================================

-- {==================================================================
-- The parser
-- ===================================================================

-- The wide encoding a file's first bytes show, or nil for UTF-8.
local function wide_encoding(text)
   local head = text:sub(1, 4)
   if head:find("^\0\0\xfe\xff") or head:find("^\xff\xfe\0\0") then
      return "UTF-32"
   end
   if head:find("^\xff\xfe") or head:find("^\xfe\xff") then
      return "UTF-16"
   end
   if not text:sub(1, 64):find("\0") then return nil end
   if head:find("^\0\0\0") or head:find("^[^\0]\0\0\0") then
      return "UTF-32"
   end
   return "UTF-16"
end

-- Raise a parse error; M.parse turns it into its second result.
local function fail(msg)
   error({ parse = msg }, 0)
end

-- Line and column in the file of byte offset 'off' of I's joined text.
local function position(I, off)
   local seg = I.segs[1]
   for _, s in ipairs(I.segs) do
      if s.off > off then break end
      seg = s
   end
   return seg.line, seg.col + off - seg.off
end

-- "FILE:LINE:COL" of offset 'off' in I's text (nil: I's keyword).
local function where(P, I, off)
   local line, col = I.line, I.col
   if off then line, col = position(I, off) end
   return string.format("%s:%d:%d", P.file, line, col)
end

local function fail_at(P, I, off, msg)
   fail(where(P, I, off) .. ": " .. msg)
end

local function warn_at(P, I, off, msg)
   P.warnings[#P.warnings + 1] = where(P, I, off) .. ": warning: " .. msg
end

-- Check that a raw word expands; 'off' is its offset in I's text.
local function check_word(P, I, raw, off)
   local _, err, pos = M.expand(raw, {}, P.escape)
   if err then fail_at(P, I, off and off + pos - 1, err) end
end

-- Parse I.rawflags against 'spec' (name -> "string" | "bool"): return
-- name -> value, and name -> offset of the flag in I's text.
local function parse_flags(P, I, spec)
   local out, at = {}, {}
   for _, f in ipairs(I.rawflags) do
      local name, value = f.text:match("^%-%-([^=]*)=(.*)$")
      if not name then name = f.text:sub(3) end
      local kind = spec[name]
      if not kind then
         if I.op == "COPY" and name == "from" then
            fail_at(P, I, f.off, "COPY --from is not supported: clayer "
               .. "has no build stages")
         end
         fail_at(P, I, f.off, "unknown flag: " .. name)
      end
      if out[name] then
         fail_at(P, I, f.off, "duplicate flag specified: " .. name)
      end
      if kind == "bool" then
         local v = value and value:lower()
         if v == "" then
            fail_at(P, I, f.off, "missing a value on flag: " .. name)
         elseif v ~= nil and v ~= "true" and v ~= "false" then
            fail_at(P, I, f.off, "expecting boolean value for flag "
               .. name .. ", not: " .. value)
         end
         out[name] = v or "true"
      else
         if not value then
            fail_at(P, I, f.off, "missing a value on flag: " .. name)
         end
         out[name] = value
      end
      at[name] = f.off
   end
   return out, at
end

-- Raw words of the rest of I, each {text, off}.
local function words_of(P, I)
   local list = split_words(I.rest, P.escape)
   for _, w in ipairs(list) do w.off = I.rest_off + w.pos - 1 end
   return list
end

-- Add I to the document, without the parser's working fields.
local function push(P, I)
   I.segs, I.rest, I.rest_off, I.rawflags = nil, nil, nil, nil
   P.instructions[#P.instructions + 1] = I
end

local function texts(list)
   local out = {}
   for k, w in ipairs(list) do out[k] = w.text end
   return out
end

local handlers = {}

-- Read the heredoc bodies of a RUN from the lines after the instruction.
local function read_heredocs(P, I, docs)
   for _, d in ipairs(docs) do
      local body, done = {}, false
      while P.i < #P.lines do
         P.i = P.i + 1
         local line = P.lines[P.i]
         local probe = d.chomp and line:gsub("^\t+", "") or line
         if probe == d.name then
            done = true
            break
         end
         body[#body + 1] = line .. "\n"
      end
      if not done then
         fail_at(P, I, I.rest_off + d.pos - 1, "unterminated heredoc")
      end
      d.body = table.concat(body)
      d.pos, d.stop = nil, nil
   end
end

function handlers.RUN(P, I)
   parse_flags(P, I, {})
   if I.rest == "" then fail_at(P, I, nil, "RUN requires a command") end
   if I.rest:sub(1, 1) == "[" then
      local argv = json_strings(I.rest)
      if argv and #argv == 0 then
         fail_at(P, I, I.rest_off, "RUN requires a command")
      elseif argv then
         I.exec, I.args = argv, argv
         return push(P, I)
      end
      warn_at(P, I, I.rest_off, "RUN looks like exec form but is not a "
         .. "JSON array of strings; running it with the shell")
   end
   I.args = { I.rest }
   I.cmd = I.rest
   local docs = find_heredocs(I.rest)
   if #docs == 0 then return push(P, I) end
   local alone = #docs == 1 and docs[1].pos == 1 and docs[1].stop == #I.rest
   read_heredocs(P, I, docs)
   I.heredocs = docs
   if alone then
      local body = docs[1].body
      if docs[1].chomp then
         body = body:gsub("^\t+", ""):gsub("\n\t+", "\n")
      end
      I.cmd = body
      if body:sub(1, 2) == "#!" then I.script = body end
   else
      local full = { I.rest }
      for _, d in ipairs(docs) do
         full[#full + 1] = "\n" .. d.body .. d.name
      end
      I.cmd = table.concat(full)
   end
   push(P, I)
end

--- Whether s is a valid variable name: [A-Za-z_][A-Za-z0-9_]*.  Only
-- such names are taken: a name is written into `export NAME=...` lines.
function M.valid_name(s)
   return type(s) == "string" and s:match("^[A-Za-z_][A-Za-z0-9_]*$") ~= nil
end

-- Refuse a name that is not a shell variable name.
local function check_name(P, I, name, off)
   if not M.valid_name(name) then
      fail_at(P, I, off, ("%s: invalid variable name '%s': use letters, "
         .. "digits and '_', not starting with a digit"):format(I.op, name))
   end
end

-- A variable name from a raw word: quotes removed, no substitution.
local function var_name(P, I, raw, off)
   if raw == "" then fail_at(P, I, off, I.op .. " names can not be blank") end
   check_word(P, I, raw, off)
   if raw:find("$", 1, true) then
      fail_at(P, I, off, "substitution in an " .. I.op
         .. " name is not supported")
   end
   local name = M.expand(raw, {}, P.escape)
   check_name(P, I, name, off)
   return name
end

function handlers.ENV(P, I)
   parse_flags(P, I, {})
   local words = words_of(P, I)
   if #words == 0 then
      fail_at(P, I, nil, "ENV requires at least one argument")
   end
   I.pairs, I.args = {}, texts(words)
   if not words[1].text:find("=", 1, true) then
      -- legacy form: ENV NAME the rest of the line
      local name, gap = I.rest:match("^([^\t\v\f\r ]+)([\t\v\f\r ]*)")
      local value = I.rest:sub(#name + #gap + 1)
      if value == "" then
         fail_at(P, I, I.rest_off, "ENV " .. name .. " has no value "
            .. "(write " .. name .. "= to set it empty)")
      end
      local voff = I.rest_off + #name + #gap
      name = var_name(P, I, name, I.rest_off)
      check_word(P, I, value, voff)
      I.pairs[1], I.args = { name, value }, { name, value }
      return push(P, I)
   end
   for _, w in ipairs(words) do
      local eq = w.text:find("=", 1, true)
      if not eq then
         fail_at(P, I, w.off, "can't find = in " .. w.text
            .. "; write NAME=VALUE")
      end
      local value = w.text:sub(eq + 1)
      local name = var_name(P, I, w.text:sub(1, eq - 1), w.off)
      check_word(P, I, value, w.off + eq)
      I.pairs[#I.pairs + 1] = { name, value }
   end
   push(P, I)
end

-- ARG A[=x] [B[=y] ...]: one instruction per name.
function handlers.ARG(P, I)
   parse_flags(P, I, {})
   local words = words_of(P, I)
   if #words == 0 then
      fail_at(P, I, nil, "ARG requires at least one argument")
   end
   for _, w in ipairs(words) do
      local name, default = w.text, nil
      local eq = w.text:find("=", 1, true)
      if eq then
         name, default = w.text:sub(1, eq - 1), w.text:sub(eq + 1)
         check_word(P, I, default, w.off + eq)
      end
      if name == "" then fail_at(P, I, w.off, "ARG names can not be blank") end
      check_name(P, I, name, w.off)
      local each = {}
      for k, v in pairs(I) do each[k] = v end
      each.name, each.default, each.args = name, default, { w.text }
      push(P, each)
   end
end

function handlers.WORKDIR(P, I)
   parse_flags(P, I, {})
   if I.rest == "" then
      fail_at(P, I, nil, "WORKDIR requires exactly one argument")
   end
   check_word(P, I, I.rest, I.rest_off)
   I.path, I.args = I.rest, { I.rest }
   push(P, I)
end

function handlers.SHELL(P, I)
   parse_flags(P, I, {})
   local argv = json_strings(I.rest)
   if not argv or #argv == 0 then
      fail_at(P, I, I.rest_off, 'SHELL requires a JSON array of strings, '
         .. 'as in SHELL ["/bin/bash", "-c"]')
   end
   I.argv, I.args = argv, argv
   push(P, I)
end

function handlers.SNAPSHOT(P, I)
   local flags = parse_flags(P, I, { all = "bool" })
   local words = words_of(P, I)
   if #words ~= 1 then
      fail_at(P, I, nil, "SNAPSHOT needs one PATH")
   end
   check_word(P, I, words[1].text, words[1].off)
   I.path, I.all, I.args = words[1].text, flags.all == "true",
      texts(words)
   push(P, I)
end

function handlers.FETCH(P, I)
   local f, at = parse_flags(P, I, { sha256 = "string",
      ["strip-components"] = "string", extract = "string", chmod = "string" })
   local flags = { extract = f.extract or "auto", strip_components = 0 }
   if f.sha256 then
      if not f.sha256:match("^" .. ("%x"):rep(64) .. "$") then
         fail_at(P, I, at.sha256, "FETCH --sha256 needs 64 hex digits")
      end
      flags.sha256 = f.sha256:lower()
   end
   if f["strip-components"] then
      local n = f["strip-components"]:match("^%d+$")
      if not n or #n > 6 then
         fail_at(P, I, at["strip-components"],
            "FETCH --strip-components needs a number")
      end
      flags.strip_components = tonumber(n)
   end
   if flags.extract ~= "auto" and flags.extract ~= "no" then
      fail_at(P, I, at.extract, "FETCH --extract must be auto or no")
   end
   if f.chmod then
      if not f.chmod:match("^[0-7][0-7][0-7][0-7]?$") then
         fail_at(P, I, at.chmod, "FETCH --chmod needs an octal mode")
      end
      flags.chmod = f.chmod
   end
   local words = words_of(P, I)
   if #words ~= 2 then fail_at(P, I, nil, "FETCH needs SRC and DEST") end
   for _, w in ipairs(words) do check_word(P, I, w.text, w.off) end
   I.src, I.dest, I.flags = words[1].text, words[2].text, flags
   I.args = texts(words)
   push(P, I)
end

local COPY_FLAGS = { chmod = "string", chown = "string", link = "bool" }
local ADD_FLAGS = { chmod = "string", chown = "string", link = "bool",
                    checksum = "string" }

function handlers.COPY(P, I)
   local flags, at = parse_flags(P, I,
      I.op == "ADD" and ADD_FLAGS or COPY_FLAGS)
   if flags.chmod and not flags.chmod:match("^[0-7][0-7][0-7][0-7]?$") then
      fail_at(P, I, at.chmod, I.op .. " --chmod needs an octal mode")
   end
   local list = json_strings(I.rest)
   if list then
      for k, s in ipairs(list) do
         list[k] = { text = s }
         check_word(P, I, s, nil)
      end
   else
      list = words_of(P, I)
      for _, w in ipairs(list) do
         if w.text:match("^%d*<<") then
            fail_at(P, I, w.off, I.op .. " does not take heredocs")
         end
         check_word(P, I, w.text, w.off)
      end
   end
   if #list < 2 then
      fail_at(P, I, nil, I.op .. " needs SRC... and DEST")
   end
   I.args = texts(list)
   I.srcs = { table.unpack(I.args, 1, #list - 1) }
   I.dest, I.flags = I.args[#list], flags
   push(P, I)
end
handlers.ADD = handlers.COPY

-- Parser directives (# escape=, # syntax=, # check=) at the top.
local function directives(P)
   local seen = {}
   P.directives = seen
   for n, line in ipairs(P.lines) do
      local key, value = line:match(
         "^%s*#[ \t]*(%a%w*)[ \t]*=[ \t]*(.-)[ \t]*$")
      key = key and key:lower()
      if not key or value == ""
         or not (key == "escape" or key == "syntax" or key == "check") then
         return
      end
      local at = string.format("%s:%d:1: ", P.file, n)
      if seen[key] then
         fail(at .. "only one " .. key .. " parser directive can be used")
      end
      seen[key] = value
      if key == "escape" then
         if value ~= "\\" and value ~= "`" then
            fail(at .. "invalid escape token '" .. value
               .. "' does not match ` or \\")
         end
         P.escape = value
      end
   end
end

-- Is line a comment (any indentation, then #)?
local function is_comment(line)
   return line:sub(skip_space(line, 1), skip_space(line, 1)) == "#"
end

-- Strip the continuation mark off a line: the text and whether the
-- instruction goes on.
local function continued(P, line)
   local esc = P.escape == "`" and "`" or "\\"
   local s = line:match("^(.-)" .. "%" .. esc .. "[ \t]*$")
   if s then return s, true end
   return line, false
end

-- Join the instruction starting on line P.i: its text, where each piece
-- of the text came from (segs), and the first empty line dropped.
local function join(P)
   local first = P.lines[P.i]
   local start = skip_space(first, 1)
   local text, more = continued(P, first:sub(start))
   local parts = { text }
   local segs = { { off = 1, line = P.i, col = start } }
   local size, empty = #text, nil
   while more and P.i < #P.lines do
      P.i = P.i + 1
      local line = P.lines[P.i]
      if is_comment(line) then
         goto next
      elseif skip_space(line, 1) > #line then
         empty = empty or P.i
         goto next
      end
      text, more = continued(P, line)
      segs[#segs + 1] = { off = size + 1, line = P.i, col = 1 }
      parts[#parts + 1] = text
      size = size + #text
      ::next::
   end
   return { text = table.concat(parts), segs = segs, empty = empty }
end

-- Build the instruction from a joined line and dispatch it.
local function instruction(P, J)
   local text = rtrim(J.text)
   local kstart = skip_space(text, 1)
   local kw = text:match("^[^\t\v\f\r ]+", kstart)
   local kend = kstart + #kw - 1
   local I = { op = kw:upper(), segs = J.segs, text = text:sub(kstart) }
   I.line, I.col = position(I, kstart)
   if J.empty then
      P.warnings[#P.warnings + 1] = string.format(
         "%s:%d:1: warning: empty continuation line", P.file, J.empty)
   end
   local flags, rest = split_flags(text:sub(kend + 1))
   I.rest_off = kend + rest
   I.rest = text:sub(I.rest_off)
   local handler = handlers[I.op]
   if IGNORED[I.op] then
      I.ignored, I.args = true, { text:sub(skip_space(text, kend + 1)) }
      return push(P, I)
   elseif not handler then
      if P.unknown ~= "warn" then
         fail_at(P, I, nil, "unknown instruction: " .. I.op)
      end
      warn_at(P, I, nil, "unknown instruction: " .. I.op .. " (ignored)")
      I.ignored, I.unknown, I.args = true, true, {}
      return push(P, I)
   end
   for _, f in ipairs(flags) do f.off = kend + f.pos end
   I.rawflags = flags
   handler(P, I)
end

--- Parse a Containerfile's text whole.
-- @param text the file's bytes
-- @param filename the name used in messages
-- @param opts {unknown = "error" | "warn"}
-- @return doc {instructions, warnings, escape, directives}, or nil, message
function M.parse(text, filename, opts)
   assert(type(text) == "string", "parse: text must be a string")
   filename = filename or "Containerfile"
   opts = opts or {}
   local enc = wide_encoding(text)
   if enc then
      return nil, string.format("%s:1:1: file is %s encoded; save it as "
         .. "UTF-8", filename, enc)
   end
   text = text:gsub("^\xef\xbb\xbf", ""):gsub("\r\n?", "\n")
   local _, bad = utf8.len(text)
   if bad then
      local before = text:sub(1, bad - 1)
      local _, nl = before:gsub("\n", "")
      local col = bad - (before:match(".*\n()") or 1) + 1
      return nil, string.format("%s:%d:%d: not valid UTF-8", filename,
         nl + 1, col)
   end
   local lines = {}
   for line in (text:sub(-1) == "\n" and text or text .. "\n")
      :gmatch("(.-)\n") do
      lines[#lines + 1] = line
   end
   local P = { file = filename, lines = lines, escape = "\\", i = 1,
               warnings = {}, instructions = {}, directives = {},
               unknown = opts.unknown or "error" }
   local ok, err = pcall(function()
      directives(P)
      while P.i <= #lines do
         local line = lines[P.i]
         if not is_comment(line) and skip_space(line, 1) <= #line then
            local J = join(P)
            if skip_space(J.text, 1) <= #J.text then instruction(P, J) end
         end
         P.i = P.i + 1
      end
   end)
   if not ok then
      if type(err) == "table" and err.parse then return nil, err.parse end
      error(err, 0)
   end
   return { instructions = P.instructions, warnings = P.warnings,
            escape = P.escape, directives = P.directives }
end

--- Read a Containerfile, refusing UTF-16 and UTF-32.
-- @return the text, or nil, "PATH: why"
function M.read(path)
   local f, err = io.open(path, "rb")
   if not f then return nil, err end
   local text, rerr = f:read("a")
   f:close()
   if not text then return nil, path .. ": " .. tostring(rerr) end
   local enc = wide_encoding(text)
   if enc then
      return nil, string.format("%s:1:1: file is %s encoded; save it as "
         .. "UTF-8", path, enc)
   end
   return text
end

-- }==================================================================

-- {==================================================================
-- The cache key
-- ===================================================================

-- Code points Python's str.isspace() accepts.
local function py_space(cp)
   return (cp >= 9 and cp <= 13) or (cp >= 0x1c and cp <= 0x20)
      or cp == 0x85 or cp == 0xa0 or cp == 0x1680
      or (cp >= 0x2000 and cp <= 0x200a) or cp == 0x2028 or cp == 0x2029
      or cp == 0x202f or cp == 0x205f or cp == 0x3000
end

-- s stripped as Python's str.strip() does.
local function py_strip(s)
   local first, last
   for p, cp in utf8.codes(s) do
      if not py_space(cp) then
         first = first or p
         last = p
      end
   end
   if not first then return "" end
   local tail = utf8.offset(s, 2, last) or #s + 1
   return s:sub(first, tail - 1)
end

--- The cache key of a Containerfile's text (the original tool's).
-- @param text the file's bytes
-- @param extras the string M.extras gives ("" or nil: none)
-- @return 16-hex key and 64-hex digest, or nil, "not valid UTF-8"
function M.key(text, extras)
   text = text:gsub("\r\n?", "\n")
   if not utf8.len(text) then return nil, "not valid UTF-8" end
   text = py_strip(text)
   if extras and extras ~= "" then
      text = text .. "\n# salt: " .. extras
   end
   local full = hash.sha256(text)
   return full:sub(1, 16), full
end

-- Byte-order comparison (string '<' follows the locale).
local function byte_less(a, b)
   for i = 1, math.min(#a, #b) do
      local x, y = a:byte(i), b:byte(i)
      if x ~= y then return x < y end
   end
   return #a < #b
end

--- The extras string folded into the key.
-- @param inputs {salt = S, args = {K = V}, copies = {PATH = SHA},
--   refs = {SRC = COMMIT}, chains = {NAME = KEY} (policy chain_keys)}
-- @return the salt alone when it is the only input, else sorted lines
function M.extras(inputs)
   inputs = inputs or {}
   local lines = {}
   for _, kind in ipairs({ "arg", "copy", "ref", "chain" }) do
      local t = inputs[kind == "copy" and "copies" or kind .. "s"] or {}
      for k, v in pairs(t) do
         lines[#lines + 1] = kind .. ":" .. k .. "=" .. v
      end
   end
   local salt = inputs.salt
   if salt == "" then salt = nil end
   if #lines == 0 then return salt or "" end
   if salt then lines[#lines + 1] = "salt:" .. salt end
   table.sort(lines, byte_less)
   return table.concat(lines, "\n")
end

-- }==================================================================

return M
