/*
 * json.c: the clayer.json module, JSON through jansson.
 *
 * Lua tables cannot tell an empty array from an empty object, nor hold
 * nil, so two markers stand in: json.null, a light userdata (a pointer to
 * a static in this file) that decodes from and encodes to `null`, and a
 * shared metatable that json.array(t) sets and decoded arrays carry.
 * Output always has its object keys sorted, so equal values give equal
 * bytes.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "clayer.h"

#define JSON_ARRAY_MT "clayer.json.array"
#define JSON_BOX "clayer.json.box"
#define JSON_MAX_DEPTH 1000             /* nesting bound for encode */

static char null_tag;                  /* its address is json.null */
#define NULL_SENTINEL ((void *)&null_tag)

/*
 * While encoding, every container made so far is also held by `keep`, so
 * an error raised half-way frees them all when the box is collected.
 */
typedef struct {
  json_t *keep;                         /* array of containers, or NULL */
  json_t *root;                         /* decoded tree, or NULL */
} json_box;

typedef struct {
  json_box *box;
  int seen;                             /* stack index: tables being encoded */
  int precision;                        /* digits every real needs, 15..17 */
} encoder;


/* __gc of a box: drop what it holds; safe to repeat. */
static int box_release(lua_State *L)
{
  json_box *b = luaL_checkudata(L, 1, JSON_BOX);

  json_decref(b->keep);
  json_decref(b->root);
  b->keep = NULL;
  b->root = NULL;
  return 0;
}

static json_box *new_box(lua_State *L)
{
  json_box *b = lua_newuserdatauv(L, sizeof(*b), 0);

  b->keep = NULL;
  b->root = NULL;
  luaL_setmetatable(L, JSON_BOX);
  return b;
}

static int is_marked(lua_State *L, int idx)
{
  int marked;

  if(!lua_getmetatable(L, idx))
    return 0;
  luaL_getmetatable(L, JSON_ARRAY_MT);
  marked = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return marked;
}

/*
 * A new container, owned by the box's `keep` array: callers take their
 * own reference once it is complete.
 */
static json_t *new_container(lua_State *L, encoder *e, int array)
{
  json_t *j = array ? json_array() : json_object();

  if(json_array_append_new(e->box->keep, j))   /* frees j on failure */
    luaL_error(L, "json.encode: out of memory");
  return j;
}

static json_t *encode_value(lua_State *L, encoder *e, int idx, int depth);

/*
 * The fewest significant digits, from 15 to 17, that give back d.  The
 * dump uses the largest such count of all reals, so 0.1 prints as 0.1 yet
 * every double survives a round trip.
 */
static int digits_for(double d)
{
  char buf[40];
  int p;

  for(p = 15; p < 17; p++) {
    snprintf(buf, sizeof(buf), "%.*g", p, d);
    if(strtod(buf, NULL) == d)
      break;
  }
  return p;
}

/* Append each value t[1..n] to the array a. */
static void encode_items(lua_State *L, encoder *e, int idx, json_t *a,
                         lua_Integer n, int depth)
{
  lua_Integer i;

  for(i = 1; i <= n; i++) {
    lua_rawgeti(L, idx, i);
    if(json_array_append_new(a, encode_value(L, e, lua_gettop(L), depth)))
      luaL_error(L, "json.encode: out of memory");
    lua_pop(L, 1);
  }
}

/* Set each string key of table idx in the object o. */
static void encode_fields(lua_State *L, encoder *e, int idx, json_t *o,
                          int depth)
{
  const char *k;
  size_t klen;
  json_t *v;

  lua_pushnil(L);
  while(lua_next(L, idx)) {
    k = lua_tolstring(L, -2, &klen);    /* keys were checked: strings */
    v = encode_value(L, e, lua_gettop(L), depth);
    if(json_object_setn_new(o, k, klen, v))
      luaL_error(L, "json.encode: key is not valid UTF-8");
    lua_pop(L, 1);
  }
}

/*
 * A table: an array when marked or keyed 1..n only, an object when keyed
 * by strings only, `{}` when empty and unmarked; anything else raises.
 */
static json_t *encode_table(lua_State *L, encoder *e, int idx, int depth)
{
  lua_Integer n = 0, max = 0, k;
  int strings = 0, others = 0;
  json_t *j;

  if(depth > JSON_MAX_DEPTH)
    luaL_error(L, "json.encode: nesting deeper than %d", JSON_MAX_DEPTH);
  luaL_checkstack(L, 8, "json.encode");
  lua_pushvalue(L, idx);
  if(lua_rawget(L, e->seen) != LUA_TNIL)
    luaL_error(L, "json.encode: cycle in table");
  lua_pop(L, 1);
  lua_pushvalue(L, idx);
  lua_pushboolean(L, 1);
  lua_rawset(L, e->seen);

  lua_pushnil(L);
  while(lua_next(L, idx)) {
    lua_pop(L, 1);
    n++;
    if(lua_type(L, -1) == LUA_TSTRING)
      strings = 1;
    else if(lua_isinteger(L, -1) && (k = lua_tointeger(L, -1)) > 0)
      max = k > max ? k : max;
    else
      others = 1;
  }
  if(others || (strings && max) || (!strings && max != n))
    luaL_error(L, "json.encode: table with %s keys",
               others ? "non-string, non-index" : "mixed or sparse");
  if(strings && is_marked(L, idx))
    luaL_error(L, "json.encode: array-marked table with string keys");

  j = new_container(L, e, !strings && (n > 0 || is_marked(L, idx)));
  if(json_is_array(j))
    encode_items(L, e, idx, j, n, depth + 1);
  else
    encode_fields(L, e, idx, j, depth + 1);

  lua_pushvalue(L, idx);
  lua_pushnil(L);
  lua_rawset(L, e->seen);
  return json_incref(j);
}

/* A new reference to the JSON form of the value at idx; raises. */
static json_t *encode_value(lua_State *L, encoder *e, int idx, int depth)
{
  json_t *j = NULL;
  const char *s;
  size_t len;
  lua_Number d;

  switch(lua_type(L, idx)) {
  case LUA_TNIL:
    j = json_null();
    break;
  case LUA_TBOOLEAN:
    j = json_boolean(lua_toboolean(L, idx));
    break;
  case LUA_TNUMBER:
    if(lua_isinteger(L, idx))
      j = json_integer(lua_tointeger(L, idx));
    else {
      d = lua_tonumber(L, idx);
      if(!isfinite(d))
        luaL_error(L, "json.encode: cannot encode %s",
                   isnan(d) ? "NaN" : "an infinite number");
      if(e->precision < 17 && digits_for(d) > e->precision)
        e->precision = digits_for(d);
      j = json_real(d);
    }
    break;
  case LUA_TSTRING:
    s = lua_tolstring(L, idx, &len);
    j = json_stringn(s, len);
    if(j == NULL)
      luaL_error(L, "json.encode: string is not valid UTF-8");
    break;
  case LUA_TLIGHTUSERDATA:
    if(lua_touserdata(L, idx) == NULL_SENTINEL)
      j = json_null();
    break;
  case LUA_TTABLE:
    return encode_table(L, e, idx, depth);
  default:
    break;
  }
  if(j == NULL)
    luaL_error(L, "json.encode: cannot encode a %s value",
               luaL_typename(L, idx));
  return j;
}


/*
 * json.encode(v [, opts]): a new string, keys sorted, compact unless
 * opts.pretty (2-space indent).  Raises on values JSON cannot hold.
 */
static int json_encode(lua_State *L)
{
  int pretty = clayer_optboolean(L, 2, "pretty", 0);
  size_t flags = JSON_SORT_KEYS | JSON_ENCODE_ANY;
  encoder e;
  json_t *root;
  char *out;

  luaL_checkany(L, 1);
  lua_settop(L, 2);
  if(lua_istable(L, 2)) {
    lua_pushnil(L);
    while(lua_next(L, 2)) {
      lua_pop(L, 1);
      if(lua_type(L, -1) != LUA_TSTRING ||
         strcmp(lua_tostring(L, -1), "pretty") != 0)
        return luaL_error(L, "json.encode: unknown option '%s'",
                          luaL_tolstring(L, -1, NULL));
    }
  }
  e.box = new_box(L);                   /* 3 */
  e.box->keep = json_array();
  if(e.box->keep == NULL)
    return luaL_error(L, "json.encode: out of memory");
  lua_newtable(L);                      /* 4: tables being encoded */
  e.seen = 4;
  e.precision = 15;
  root = encode_value(L, &e, 1, 0);
  json_decref(e.box->keep);             /* the tree holds what it needs */
  e.box->keep = NULL;
  e.box->root = root;
  flags |= pretty ? JSON_INDENT(2) : JSON_COMPACT;
  flags |= JSON_REAL_PRECISION(e.precision);
  out = json_dumps(root, flags);
  json_decref(e.box->root);
  e.box->root = NULL;
  if(out == NULL)
    return luaL_error(L, "json.encode: cannot serialize");
  lua_pushstring(L, out);
  free(out);
  return 1;
}


/* Push the Lua form of j; arrays get the mark, null gives json.null. */
static void decode_value(lua_State *L, json_t *j)
{
  const char *key;
  size_t i, klen;
  json_t *v;

  luaL_checkstack(L, 4, "json.decode");
  switch(json_typeof(j)) {
  case JSON_OBJECT:
    lua_createtable(L, 0, (int)json_object_size(j));
    json_object_keylen_foreach(j, key, klen, v) {
      lua_pushlstring(L, key, klen);
      decode_value(L, v);
      lua_rawset(L, -3);
    }
    break;
  case JSON_ARRAY:
    lua_createtable(L, (int)json_array_size(j), 0);
    json_array_foreach(j, i, v) {
      decode_value(L, v);
      lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    luaL_setmetatable(L, JSON_ARRAY_MT);
    break;
  case JSON_STRING:
    lua_pushlstring(L, json_string_value(j), json_string_length(j));
    break;
  case JSON_INTEGER:
    lua_pushinteger(L, json_integer_value(j));
    break;
  case JSON_REAL:
    lua_pushnumber(L, json_real_value(j));
    break;
  case JSON_TRUE:
    lua_pushboolean(L, 1);
    break;
  case JSON_FALSE:
    lua_pushboolean(L, 0);
    break;
  case JSON_NULL:
    lua_pushlightuserdata(L, NULL_SENTINEL);
    break;
  }
}


/*
 * json.decode(s): the value s holds (any JSON value at the top), or
 * nil, "json: line L col C: why".  Integers decode as Lua integers.
 */
static int json_decode(lua_State *L)
{
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  json_error_t err;
  json_box *b = new_box(L);             /* frees the tree if we raise */

  b->root = json_loadb(s, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
  if(b->root == NULL)
    return clayer_fail(L, NULL, "json: line %d col %d: %s", err.line,
                       err.column, err.text);
  decode_value(L, b->root);
  json_decref(b->root);
  b->root = NULL;
  return 1;
}


/* json.array(t): sets the array mark on t and returns t. */
static int json_mark_array(lua_State *L)
{
  luaL_checktype(L, 1, LUA_TTABLE);
  if(lua_getmetatable(L, 1) && !is_marked(L, 1))
    return luaL_argerror(L, 1, "table already has a metatable");
  lua_settop(L, 1);
  luaL_setmetatable(L, JSON_ARRAY_MT);
  return 1;
}


/* json.is_array(v): whether v is a table carrying the array mark. */
static int json_is_array_mark(lua_State *L)
{
  lua_pushboolean(L, lua_type(L, 1) == LUA_TTABLE && is_marked(L, 1));
  return 1;
}


static const luaL_Reg json_funcs[] = {
  {"encode",   json_encode},
  {"decode",   json_decode},
  {"array",    json_mark_array},
  {"is_array", json_is_array_mark},
  {NULL, NULL}
};

int luaopen_clayer_json(lua_State *L)
{
  luaL_newmetatable(L, JSON_BOX);
  lua_pushcfunction(L, box_release);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  luaL_newmetatable(L, JSON_ARRAY_MT);
  lua_pop(L, 1);
  luaL_newlib(L, json_funcs);
  lua_pushlightuserdata(L, NULL_SENTINEL);
  lua_setfield(L, -2, "null");
  return 1;
}
