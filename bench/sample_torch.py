"""The PyTorch counterpart of bench/bench_sample_one.lua: per-token sampling of the same
prior over per-layer KV caches, in the reference's structure (jukebox/transformer/
transformer.py and factored_attention.py in sample mode, re-expressed here):

  pre-LN blocks: a = c_proj(attn(c_attn(ln_0(x)))), m = mlp(ln_1(x + a)), x = x + a + m;
  c_attn -> q, k, v, q and k scaled by d^-1/4; each layer keeps a cache dict of key and
  value tensors grown by torch.cat and sliced to what its attn_func needs (dense and
  column: every position; row: the current block; previous block: previous + current);
  per token the query attends over: row (1) the whole cache, column (2) the cache at the
  same offset in earlier blocks (k[:, offset::block_ctx]), previous block (3) the
  previous block (zeros in block 0); MLP c_fc -> x sigmoid(1.702 x) -> c_proj; logits
  x @ x_emb.weight^T (tied); a Categorical draw per sample; torch.no_grad().

Random weights. The PAST primed positions are not timed: each layer's cache is filled
with PAST random keys and values (what the reference's chunked priming leaves, with the
same lengths), then 2 warm-up tokens, then NEW timed tokens.

  /usr/bin/python3 bench/sample_torch.py WIDTH DEPTH HEADS N_CTX BLOCKS ATTN_ORDER BATCH PAST NEW THREADS
prints "RESULT torch ..." in the columns of bench_sample_one.lua (tokens/s, bandwidth
bound, share, GB/s, cache MB per sample, peak MB); the cache column is what this process
holds in its caches at the end, per sample.
"""
import math
import os
import resource
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from prior_torch import ATTN_ORDERS, Conv1D  # noqa: E402  (the training bench's, shared)


class Attention(torch.nn.Module):
    def __init__(self, width, n_state, heads, func, block_ctx):
        super().__init__()
        self.c_attn, self.c_proj = Conv1D(width, 3 * n_state), Conv1D(n_state, width)
        self.heads, self.func, self.block_ctx = heads, func, block_ctx
        self.cache, self.sample_t = {}, 0

    def suff_cache_len(self):  # the reference's _suff_cache_len
        t, bc = self.sample_t, self.block_ctx
        if self.func == 1:
            return (t - 1) % bc + 1
        if self.func == 3:
            return t if t <= bc else (t - 1) % bc + 1 + bc
        return t

    def append(self, k, v):
        if 'key' in self.cache:
            k = torch.cat([self.cache['key'], k], dim=1)
            v = torch.cat([self.cache['value'], v], dim=1)
        n = self.suff_cache_len()
        self.cache['key'], self.cache['value'] = k[:, -n:], v[:, -n:]
        return self.cache['key'], self.cache['value']

    def dense(self, q, k, v):  # q [b, 1, s], k and v [b, l, s]
        b, _, s = q.shape
        h, d = self.heads, s // self.heads
        q = q.view(b, 1, h, d).permute(0, 2, 1, 3)
        k = k.reshape(b, -1, h, d).permute(0, 2, 3, 1)
        v = v.reshape(b, -1, h, d).permute(0, 2, 1, 3)
        w = F.softmax(torch.matmul(q, k), dim=-1)  # q and k are scaled already
        return torch.matmul(w, v).permute(0, 2, 1, 3).reshape(b, 1, s)

    def forward(self, x):  # x [b, 1, width]: one new position
        q, k, v = self.c_attn(x).chunk(3, dim=2)
        scale = 1.0 / math.sqrt(math.sqrt(q.shape[-1] // self.heads))
        q, k = q * scale, k * scale
        self.sample_t += 1
        k, v = self.append(k, v)
        bc = self.block_ctx
        if self.func == 2:
            off = (self.sample_t - 1) % bc
            k, v = k[:, off::bc], v[:, off::bc]
        elif self.func == 3:
            if (self.sample_t - 1) // bc > 0:
                k, v = k[:, :bc], v[:, :bc]
            else:
                k = torch.zeros(x.shape[0], bc, q.shape[-1])
                v = torch.zeros(x.shape[0], bc, q.shape[-1])
        return self.c_proj(self.dense(q, k, v))


class Block(torch.nn.Module):
    def __init__(self, width, heads, func, block_ctx):
        super().__init__()
        self.ln_0, self.ln_1 = torch.nn.LayerNorm(width), torch.nn.LayerNorm(width)
        self.attn = Attention(width, width // 4, heads, func, block_ctx)
        self.c_fc, self.mlp_proj = Conv1D(width, width), Conv1D(width, width)

    def forward(self, x):
        a = self.attn(self.ln_0(x))
        h = self.c_fc(self.ln_1(x + a))
        m = self.mlp_proj(h * torch.sigmoid(1.702 * h))
        return x + a + m


def main():
    width, depth, heads, n_ctx, blocks, order, batch, past, new, threads = (int(a) for a in sys.argv[1:11])
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    bins, bc = 2048, n_ctx // blocks
    # Read bandwidth: the sum of a 1 GiB tensor, best of 3 (as the Lua bench).
    big = torch.ones(256 * 1024 * 1024)
    big.sum()
    best = math.inf
    for _ in range(3):
        t0 = time.perf_counter()
        big.sum()
        best = min(best, time.perf_counter() - t0)
    bandwidth = 4 * big.numel() / best
    del big

    layers = torch.nn.ModuleList([Block(width, heads, ATTN_ORDERS[order](d), bc) for d in range(depth)])
    x_emb = torch.nn.Embedding(bins, width)
    pos_emb = torch.nn.Parameter(torch.randn(n_ctx, width) * 0.01)
    weight_bytes = 4 * (sum(p.numel() for p in layers.parameters()) + x_emb.weight.numel())

    with torch.no_grad():
        s = width // 4
        for layer in layers:  # the caches PAST primed positions leave
            at = layer.attn
            at.sample_t = past
            n = at.suff_cache_len()
            kv = torch.randn(2, 1, n, s).expand(2, batch, n, s).clone()
            at.cache = {'key': kv[0], 'value': kv[1]}
        tokens = torch.randint(bins, (batch,))
        t_pos = past

        def step():
            nonlocal tokens, t_pos
            x = (x_emb(tokens) + pos_emb[t_pos]).view(batch, 1, width)
            for layer in layers:
                x = layer(x)
            logits = torch.matmul(x.view(batch, width), x_emb.weight.t())
            tokens = torch.distributions.Categorical(logits=logits).sample()
            t_pos += 1

        for _ in range(2):  # warm-up
            step()
        t0 = time.perf_counter()
        for _ in range(new):
            step()
        secs = time.perf_counter() - t0
    cache_bytes = sum(4 * (l.attn.cache['key'].numel() + l.attn.cache['value'].numel()) for l in layers) / batch
    tps, bound = batch * new / secs, bandwidth / weight_bytes
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT torch   %5d %5d %5d %6d %5d %5d %5d %5d %3d | %9.1f %8.1f %6.0f%% | %7.1f %8.1f %8.0f" % (
        width, depth, heads, n_ctx, blocks, order, batch, past, threads, tps, bound, 100 * tps / bound,
        bandwidth / 1e9, cache_bytes / 2 ** 20, peak))


if __name__ == "__main__":
    main()
