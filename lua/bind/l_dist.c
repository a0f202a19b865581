/* Lua binding of the dist room (core/include/jbx_dist.h): core.dist, also jbx.dist.
 *   dist.rank() -> 0-based rank       dist.size() -> processes     dist.mpi -> built with MPI
 *   dist.allreduce_mean(t) / dist.allreduce_sum(t)   in place over ranks, returns t
 *   dist.broadcast(t, root)   root's values on every rank, in place, returns t
 *   dist.barrier()            dist.any(flag) -> true on every rank when flag is on any
 *   dist.sum_numbers({a, b, ...}) -> {sum of a over ranks, ...}   in double, for statistics
 * Tensors must be contiguous (float32 for the reductions, any dtype for broadcast). */
#include "jbx_dist.h"
#include "lj.h"

static jbx_tensor *dense(lua_State *L, int idx, bool f32_only) {
  jbx_tensor *t = lj_tensor(L, idx, "tensor");
  char s[160];
  if (!jbx_is_contiguous(t) || (f32_only && t->dtype != JBX_F32))
    lj_error(L, "%s: tensor %s %s must be contiguous%s", lj_fn_name(L), jbx_dtype_name(t->dtype),
             jbx_shape_str(t, s, sizeof s), f32_only ? " float32" : "");
  if (t->requires_grad)
    lj_error(L, "%s: tensor %s requires grad; reduce a detached tensor (or a .grad)", lj_fn_name(L),
             jbx_shape_str(t, s, sizeof s));
  return t;
}

static int reduce(lua_State *L, bool mean) {
  jbx_tensor *t = dense(L, 1, true);
  int64_t n = jbx_numel(t);
  if (jbx_dist_allreduce_sum_f32(jbx_f32(t), n) < 0) return lj_raise(L);
  int size = jbx_dist_size();
  if (mean && size > 1) {
    float *v = jbx_f32(t), inv = 1.0f / (float)size;
    for (int64_t i = 0; i < n; i++) v[i] *= inv;
  }
  lua_settop(L, 1);
  return 1;
}

static int l_allreduce_mean(lua_State *L) { return reduce(L, true); }
static int l_allreduce_sum(lua_State *L) { return reduce(L, false); }

static int l_broadcast(lua_State *L) {
  jbx_tensor *t = dense(L, 1, false);
  int root = (int)lj_int(L, 2, "root");
  int64_t nbytes = jbx_numel(t) * (int64_t)sizeof(float); /* float32 and int32 alike */
  if (jbx_dist_broadcast(jbx_f32(t), nbytes, root) < 0) return lj_raise(L);
  lua_settop(L, 1);
  return 1;
}

static int l_rank(lua_State *L) {
  lua_pushinteger(L, jbx_dist_rank());
  return 1;
}

static int l_size(lua_State *L) {
  lua_pushinteger(L, jbx_dist_size());
  return 1;
}

static int l_barrier(lua_State *L) {
  if (jbx_dist_barrier() < 0) return lj_raise(L);
  return 0;
}

static int l_any(lua_State *L) {
  bool flag = lua_toboolean(L, 1);
  if (jbx_dist_any(&flag) < 0) return lj_raise(L);
  lua_pushboolean(L, flag);
  return 1;
}

static int l_sum_numbers(lua_State *L) {
  lj_table(L, 1, "numbers");
  lua_Integer n = luaL_len(L, 1);
  double *v = lua_newuserdatauv(L, sizeof *v * (size_t)(n > 0 ? n : 1), 0); /* freed by the GC */
  for (lua_Integer i = 1; i <= n; i++) {
    lua_geti(L, 1, i);
    int ok = 0;
    v[i - 1] = lua_tonumberx(L, -1, &ok);
    if (!ok) lj_error(L, "%s: numbers[%lld] must be a number, got %s", lj_fn_name(L), (long long)i, lj_typename(L, -1));
    lua_pop(L, 1);
  }
  if (jbx_dist_allreduce_sum_f64(v, n) < 0) return lj_raise(L);
  lua_createtable(L, (int)n, 0);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_pushnumber(L, v[i - 1]);
    lua_rawseti(L, -2, i);
  }
  return 1;
}

void lj_open_dist(lua_State *L) {
  static const luaL_Reg fns[] = {{"rank", l_rank},
                                 {"size", l_size},
                                 {"allreduce_mean", l_allreduce_mean},
                                 {"allreduce_sum", l_allreduce_sum},
                                 {"broadcast", l_broadcast},
                                 {"barrier", l_barrier},
                                 {"any", l_any},
                                 {"sum_numbers", l_sum_numbers},
                                 {NULL, NULL}};
  lua_newtable(L);
  lj_setfuncs(L, fns, "dist.");
  lua_pushboolean(L, jbx_dist_has_mpi());
  lua_setfield(L, -2, "mpi");
  lua_setfield(L, -2, "dist");
}
