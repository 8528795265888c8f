-- luacheck configuration for clayer's Lua (policy scripts and specs).
std = "lua54"
max_line_length = 80
files["tests/spec"] = {
   allow_defined_top = true,   -- LuaUnit finds the global Test* tables
   unused_args = false,
   max_line_length = 100,
}
