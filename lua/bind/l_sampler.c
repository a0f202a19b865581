/* Lua binding of the sampler (core/include/jbx_sampler.h); lua/jukebox/sampler.lua builds
 * the prior's description from a Prior module and wraps this:
 *   sampler(desc, batch, chunk_size, seed) -> Sampler
 *     desc = {bins, width, n_ctx, heads, block_ctx (0: none), res_scale, ln_eps, x_emb,
 *             out_w, pos_emb, start_token (or nil), x_cond, cond_after (booleans),
 *             layers = {{attn_func, ln_0_w, ln_0_b, c_attn_w, c_attn_b, c_proj_w,
 *                        c_proj_b, ln_1_w, ln_1_b, c_fc_w, c_fc_b, mlp_proj_w,
 *                        mlp_proj_b}, ...}}
 *     The core retains the tensors (contiguous), so they outlive the Lua module if need be.
 *   s:reset([seed])  s:set_conditioning(x_cond|nil, y_cond|nil)  s:position()
 *   s:prime(codes [, want_logits=true]) -> logits [B, n, bins] or nil
 *   s:sample(n [, {temp, top_k, top_p}]) -> int32 [B, n]
 *   s:partial() -> the codes drawn before the last Ctrl-C stopped sample (int32 [B, k]), or nil
 * Ctrl-C while prime or sample runs (the jbx executable's handler raises the core's flag)
 * stops them between tokens and raises "interrupted: sampler: stopped by Ctrl-C at
 * position P (...)": the state is consistent (position P) and the codes already drawn
 * are s:partial(). */
#include <limits.h>
#include <string.h>

#include "jbx_sampler.h"
#include "lj.h"

#define SAMPLER_MT "jbx.Sampler"

typedef struct {
  jbx_sampler *s;
} sampler_box;

static jbx_sampler *check_sampler(lua_State *L) {
  sampler_box *b = luaL_testudata(L, 1, SAMPLER_MT);
  if (!b) lj_arg_error(L, 1, "self", "a Sampler");
  if (!b->s) lj_error(L, "%s: the sampler was freed", lj_fn_name(L));
  return b->s;
}

static int sampler_gc(lua_State *L) {
  sampler_box *b = luaL_checkudata(L, 1, SAMPLER_MT);
  jbx_sampler_free(b->s);
  b->s = NULL;
  return 0;
}

/* ---- the description table ---- */

static lua_Integer desc_int(lua_State *L, int idx, const char *key, lua_Integer lo) {
  lua_getfield(L, idx, key);
  int ok;
  lua_Integer v = lua_tointegerx(L, -1, &ok);
  if (!ok || v < lo || v > INT_MAX)
    lj_error(L, "%s: desc.%s must be an integer >= %lld, got %s", lj_fn_name(L), key,
             (long long)lo, luaL_tolstring(L, -1, NULL));
  lua_pop(L, 1);
  return v;
}

static double desc_num(lua_State *L, int idx, const char *key) {
  lua_getfield(L, idx, key);
  if (lua_type(L, -1) != LUA_TNUMBER)
    lj_error(L, "%s: desc.%s must be a number, got %s", lj_fn_name(L), key, lj_typename(L, -1));
  double v = lua_tonumber(L, -1);
  lua_pop(L, 1);
  return v;
}

static bool desc_bool(lua_State *L, int idx, const char *key) {
  lua_getfield(L, idx, key);
  bool v = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

/* desc[key] as a borrowed tensor (the table keeps it alive during the call), or NULL
 * when optional and nil. */
static jbx_tensor *desc_tensor(lua_State *L, int idx, const char *key, const char *where,
                               bool optional) {
  lua_getfield(L, idx, key);
  jbx_tensor *t = NULL;
  if (lj_is_tensor(L, -1)) t = lj_tensor(L, -1, key);
  else if (!(optional && lua_isnil(L, -1)))
    lj_error(L, "%s: desc.%s%s must be a tensor, got %s", lj_fn_name(L), where, key,
             lj_typename(L, -1));
  lua_pop(L, 1);
  return t;
}

static const char *const layer_keys[12] = {"ln_0_w",   "ln_0_b",   "c_attn_w", "c_attn_b",
                                           "c_proj_w", "c_proj_b", "ln_1_w",   "ln_1_b",
                                           "c_fc_w",   "c_fc_b",   "mlp_proj_w", "mlp_proj_b"};

static int l_sampler(lua_State *L) {
  lj_table(L, 1, "desc");
  const lua_Integer batch = lj_int_in(L, 2, "batch", 1, INT_MAX);
  const lua_Integer chunk = lj_int_in(L, 3, "chunk_size", 1, INT_MAX);
  const lua_Integer seed = lj_opt_int_in(L, 4, "seed", LUA_MININTEGER, LUA_MAXINTEGER, 0);
  lua_settop(L, 4);
  lua_getfield(L, 1, "layers");
  if (!lua_istable(L, 5)) lj_error(L, "%s: desc.layers must be a table of layers", lj_fn_name(L));
  const lua_Integer depth = (lua_Integer)lua_rawlen(L, 5);
  if (depth < 1 || depth > INT_MAX) lj_error(L, "%s: desc.layers is empty", lj_fn_name(L));
  /* the layer array lives in a userdata: freed by the GC even if an error is raised */
  jbx_prior_layer *layers = lua_newuserdatauv(L, sizeof *layers * (size_t)depth, 0);
  memset(layers, 0, sizeof *layers * (size_t)depth);
  for (lua_Integer i = 1; i <= depth; i++) {
    char where[32];
    snprintf(where, sizeof where, "layers[%lld].", (long long)i);
    lua_rawgeti(L, 5, i);
    if (!lua_istable(L, -1)) lj_error(L, "%s: desc.layers[%lld] must be a table", lj_fn_name(L), (long long)i);
    const int li = lua_gettop(L);
    jbx_prior_layer *l = &layers[i - 1];
    l->attn_func = (int)desc_int(L, li, "attn_func", INT_MIN);
    jbx_tensor **slots[12] = {&l->ln_0_w, &l->ln_0_b, &l->c_attn_w, &l->c_attn_b,
                              &l->c_proj_w, &l->c_proj_b, &l->ln_1_w, &l->ln_1_b,
                              &l->c_fc_w, &l->c_fc_b, &l->mlp_proj_w, &l->mlp_proj_b};
    for (int k = 0; k < 12; k++) *slots[k] = desc_tensor(L, li, layer_keys[k], where, false);
    lua_pop(L, 1);
  }
  jbx_prior_desc d = {
      .bins = desc_int(L, 1, "bins", 1), .width = desc_int(L, 1, "width", 1),
      .n_ctx = desc_int(L, 1, "n_ctx", 1), .heads = desc_int(L, 1, "heads", 1),
      .block_ctx = desc_int(L, 1, "block_ctx", 0), .depth = (int)depth, .layers = layers,
      .res_scale = (float)desc_num(L, 1, "res_scale"), .ln_eps = (float)desc_num(L, 1, "ln_eps"),
      .x_emb = desc_tensor(L, 1, "x_emb", "", false), .out_w = desc_tensor(L, 1, "out_w", "", false),
      .pos_emb = desc_tensor(L, 1, "pos_emb", "", false),
      .start_token = desc_tensor(L, 1, "start_token", "", true),
      .x_cond = desc_bool(L, 1, "x_cond"), .cond_after = desc_bool(L, 1, "cond_after")};
  sampler_box *b = lua_newuserdatauv(L, sizeof *b, 1);
  b->s = NULL;
  luaL_setmetatable(L, SAMPLER_MT);
  b->s = jbx_sampler_new(&d, batch, chunk, (uint64_t)seed);
  if (!b->s) return lj_raise(L);
  return 1;
}

/* ---- methods ---- */

static int l_reset(lua_State *L) {
  jbx_sampler *s = check_sampler(L);
  if (!lua_isnoneornil(L, 2)) jbx_sampler_seed(s, (uint64_t)lj_int(L, 2, "seed"));
  jbx_sampler_reset(s);
  return 0;
}

static int l_set_conditioning(lua_State *L) {
  jbx_sampler *s = check_sampler(L);
  jbx_tensor *x = lj_opt_tensor(L, 2, "x_cond"), *y = lj_opt_tensor(L, 3, "y_cond");
  if (jbx_sampler_set_conditioning(s, x, y) < 0) return lj_raise(L);
  return 0;
}

static int l_position(lua_State *L) {
  lua_pushinteger(L, jbx_sampler_position(check_sampler(L)));
  return 1;
}

/* Raises the core's message; a Ctrl-C stop reads "interrupted: ..." (what the cli and
 * the jbx executable recognise as an interrupt). */
static int raise_rc(lua_State *L, int rc) {
  if (rc == JBX_SAMPLER_INTERRUPTED) return lj_error(L, "interrupted: %s", jbx_last_error());
  return lj_raise(L);
}

static int l_prime(lua_State *L) {
  jbx_sampler *s = check_sampler(L);
  jbx_tensor *codes = lj_tensor(L, 2, "codes");
  const bool want = lj_opt_bool(L, 3, "want_logits", true);
  if (codes->dtype != JBX_I32 || codes->ndim != 2)
    return lj_arg_error(L, 2, "codes", "an int32 tensor [batch, n]");
  jbx_tensor *lg = NULL;
  if (want) {
    const int64_t shape[3] = {jbx_sampler_batch(s), codes->shape[1], jbx_sampler_bins(s)};
    if (codes->shape[0] == shape[0] && !(lg = jbx_empty(JBX_F32, 3, shape))) return lj_raise(L);
  }
  const int rc = jbx_sampler_prime(s, codes, lg);
  if (rc < 0) {
    jbx_release(lg);
    return raise_rc(L, rc);
  }
  if (!lg) return 0;
  return lj_push_tensor(L, lg);
}

static int l_sample(lua_State *L) {
  static const char *const known[] = {"temp", "top_k", "top_p", NULL};
  jbx_sampler *s = check_sampler(L);
  const lua_Integer n = lj_int_in(L, 2, "n", 1, INT_MAX);
  lj_check_options(L, 3, known);
  jbx_sample_opts o = {.temp = lj_opt_num_field(L, 3, "temp", 1.0),
                       .top_k = lj_opt_int_field_in(L, 3, "top_k", 0, LUA_MAXINTEGER, 0),
                       .top_p = lj_opt_num_field(L, 3, "top_p", 0.0)};
  const int64_t shape[2] = {jbx_sampler_batch(s), n};
  jbx_tensor *out = jbx_empty(JBX_I32, 2, shape);
  if (!out) return lj_raise(L);
  int64_t done = 0;
  const int rc = jbx_sampler_sample(s, n, &o, out, &done);
  if (rc == JBX_SAMPLER_INTERRUPTED) { /* keep what was drawn: s:partial() */
    char msg[768];
    snprintf(msg, sizeof msg, "%s", jbx_last_error());
    jbx_tensor *part = done > 0 ? jbx_narrow(out, 1, 0, done) : NULL;
    jbx_tensor *kept = part ? jbx_clone(part) : NULL;
    jbx_release(part);
    if (kept) lj_push_tensor(L, kept);
    else lua_pushnil(L);
    lua_setiuservalue(L, 1, 1);
    jbx_release(out);
    return lj_error(L, "interrupted: %s", msg);
  }
  if (rc < 0) {
    jbx_release(out);
    return lj_raise(L);
  }
  return lj_push_tensor(L, out);
}

static int l_partial(lua_State *L) {
  check_sampler(L);
  lua_getiuservalue(L, 1, 1);
  return 1;
}

void lj_open_sampler(lua_State *L) {
  static const luaL_Reg methods[] = {{"reset", l_reset},       {"set_conditioning", l_set_conditioning},
                                     {"position", l_position}, {"prime", l_prime},
                                     {"sample", l_sample},     {"partial", l_partial},
                                     {NULL, NULL}};
  if (luaL_newmetatable(L, SAMPLER_MT)) {
    lua_newtable(L);
    lj_setfuncs(L, methods, "sampler:");
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, sampler_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  static const luaL_Reg fns[] = {{"sampler", l_sampler}, {NULL, NULL}};
  lj_setfuncs(L, fns, "");
}
