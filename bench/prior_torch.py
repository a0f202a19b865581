"""The PyTorch counterpart of bench/bench_prior_one.lua: the same prior (the reference's
jukebox/transformer + prior/autoregressive.py training path, re-expressed here) and the
same training step (forward, bits-per-token cross-entropy, backward, Adam), timed the
same way. The block patterns use the reference's reshapes: a dense causal softmax within
each row block, within each strided column, and over the previous block; c_res 1 wraps
each block in torch.utils.checkpoint as the reference does.

  /usr/bin/python3 bench/prior_torch.py WIDTH DEPTH HEADS N_CTX BLOCKS ATTN_ORDER BATCH C_RES THREADS
prints "RESULT torch ..." in the columns of the Lua bench.
"""
import math
import resource
import sys
import time

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

ATTN_ORDERS = {0: lambda d: 0, 1: lambda d: [1, 2][d % 2], 2: lambda d: [1, 2, 3][d % 3],
               9: lambda d: [1, 2, 3, 0][d % 4]}


def dense_attn(q, k, v, heads, causal):
    b, t, s = q.shape
    d = s // heads
    q, k, v = (x.view(b, -1, heads, d).transpose(1, 2) for x in (q, k, v))
    scale = 1.0 / math.sqrt(math.sqrt(d))
    w = torch.matmul(q * scale, (k * scale).transpose(-1, -2))
    if causal:
        mask = torch.ones(t, k.shape[2], dtype=torch.bool).tril()
        w = w.masked_fill(~mask, -1e9)
    w = torch.softmax(w, dim=-1)
    return torch.matmul(w, v).transpose(1, 2).reshape(b, t, s)


def factored_attn(q, k, v, func, heads, bc):
    b, t, s = q.shape
    nb = t // bc
    if func == 1:
        r = lambda x: x.reshape(b * nb, bc, s)
        return dense_attn(r(q), r(k), r(v), heads, True).reshape(b, t, s)
    if func == 2:
        r = lambda x: x.reshape(b, nb, bc, s).transpose(1, 2).reshape(b * bc, nb, s)
        o = dense_attn(r(q), r(k), r(v), heads, True)
        return o.view(b, bc, nb, s).transpose(1, 2).reshape(b, t, s)
    if func == 3:
        def prev(x):
            x = x.reshape(b, nb, bc, s)
            x = torch.cat([torch.zeros_like(x[:, :1]), x[:, :-1]], dim=1)
            return x.reshape(b * nb, bc, s)
        return dense_attn(q.reshape(b * nb, bc, s), prev(k), prev(v), heads, False).reshape(b, t, s)
    return dense_attn(q, k, v, heads, True)


class Conv1D(torch.nn.Module):  # the reference's dense layer: weight [n_in, n_out]
    def __init__(self, n_in, n_out):
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(n_in, n_out) * 0.02)
        self.b = torch.nn.Parameter(torch.zeros(n_out))

    def forward(self, x):
        return torch.addmm(self.b, x.reshape(-1, x.shape[-1]), self.w).view(*x.shape[:-1], -1)


class Block(torch.nn.Module):
    def __init__(self, w, heads, func, bc):
        super().__init__()
        s = w // 4
        self.func, self.heads, self.bc = func, heads, bc
        self.c_attn, self.c_proj = Conv1D(w, 3 * s), Conv1D(s, w)
        self.ln_0, self.ln_1 = torch.nn.LayerNorm(w), torch.nn.LayerNorm(w)
        self.c_fc, self.m_proj = Conv1D(w, w), Conv1D(w, w)

    def forward(self, x):
        q, k, v = self.c_attn(self.ln_0(x)).chunk(3, dim=2)
        a = self.c_proj(factored_attn(q, k, v, self.func, self.heads, self.bc))
        m = self.c_fc(self.ln_1(x + a))
        m = self.m_proj(m * torch.sigmoid(1.702 * m))
        return x + a + m


class Prior(torch.nn.Module):
    def __init__(self, bins, w, depth, heads, n_ctx, blocks, order, c_res):
        super().__init__()
        bc = n_ctx // blocks if blocks else None
        self.funcs = [ATTN_ORDERS[order](d) for d in range(depth)]
        self.x_emb = torch.nn.Embedding(bins, w)
        self.start_token = torch.nn.Parameter(torch.randn(1, w) * 0.01)
        self.pos_emb = torch.nn.Parameter(torch.randn(n_ctx, w) * 0.01)
        self.blocks = torch.nn.ModuleList(Block(w, heads, f, bc) for f in self.funcs)
        self.c_res = c_res

    def forward(self, z):
        b, t = z.shape
        x = self.x_emb(z)
        x = torch.cat([self.start_token.view(1, 1, -1).expand(b, 1, -1), x[:, :-1]], dim=1) + self.pos_emb[:t]
        for blk in self.blocks:
            x = checkpoint(blk, x) if self.c_res else blk(x)
        logits = torch.matmul(x, self.x_emb.weight.t())
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), z.reshape(-1)) / math.log(2)


def attended_keys(func, t, bc):  # as bench/prior_flops.lua
    if func == 0:
        return t * (t + 1) / 2
    nb = t // bc
    if func == 1:
        return nb * bc * (bc + 1) / 2
    if func == 2:
        return bc * nb * (nb + 1) / 2
    return (nb - 1) * bc * bc


def forward_flops(w, depth, n_ctx, blocks, bins, batch, funcs):
    s = w // 4
    per_token = 2 * w * 3 * s + 2 * s * w + 2 * 2 * w * w
    f = depth * per_token * n_ctx + 2 * w * bins * n_ctx
    bc = n_ctx // blocks if blocks else None
    for func in funcs:
        f += 2 * 2 * s * attended_keys(func, n_ctx, bc)
    return f * batch


def main():
    w, depth, heads, n_ctx, blocks, order, batch, c_res, threads = (int(a) for a in sys.argv[1:10])
    bins = 2048
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    torch.matmul(a, b)
    best = min(timed(lambda: torch.matmul(a, b)) for _ in range(5))
    sgemm = 2 * 1024 ** 3 / best / 1e9
    del a, b
    model = Prior(bins, w, depth, heads, n_ctx, blocks if order else 0, order, c_res)
    opt = torch.optim.Adam(model.parameters(), lr=3e-4)
    z = torch.randint(0, bins, (batch, n_ctx))
    fwd = forward_flops(w, depth, n_ctx, blocks, bins, batch, model.funcs)
    steps = 1 if fwd > 1e12 else 3 if n_ctx * batch >= 8192 else 5  # as the Lua bench
    times = []
    for i in range(steps + 1):  # step 0 warms up (and brings Adam's moments into the peak)
        def step():
            loss = model(z)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        s = timed(step)
        if i > 0:
            times.append(s)
    s = sorted(times)[(len(times) - 1) // 2]
    gflops = 3 * fwd / s / 1e9
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT torch   %5d %5d %5d %6d %5d %5d %5d %5d %3d | %9.1f %9.0f %8.1f %6.0f%% | %8.1f %8.0f" % (
        w, depth, heads, n_ctx, blocks, order, batch, c_res, threads, s * 1e3, batch * n_ctx / s, gflops,
        100 * gflops / sgemm, sgemm, peak))


def timed(f):
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


if __name__ == "__main__":
    main()
