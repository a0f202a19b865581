#!/usr/bin/python3
"""Converts a reference Jukebox checkpoint (a `.pth.tar` of openai/jukebox: a dict whose
'model' is the state dict, with 'hps' when it was saved by the reference's trainer) into
a jukebox-c safetensors checkpoint that `models.load` (and so every recipe) accepts.

  /usr/bin/python3 tools/convert_jukebox.py vqvae vqvae.pth.tar vqvae.safetensors
  /usr/bin/python3 tools/convert_jukebox.py prior prior_level_1.pth.tar up1.safetensors \\
      --set heads=1 --set attn_order=2 --set blocks=128

Needs PyTorch (Debian's python3-torch); run once per file. What it does:
  - names: ours are the reference's, so the mapping is the identity except that a
    `module.` prefix (DistributedDataParallel) is dropped, a tied prior's
    `prior.x_out.weight` (the same tensor as `prior.x_emb.weight`) is dropped, and the
    VQ-VAE's EMA state, which the reference does not save (only each codebook `k`), is
    rebuilt as the reference's restore_k does: k_sum = k, k_elem = 1 (every code alive);
  - layouts are PyTorch's on both sides (Conv1d [out, in, k], ConvTranspose1d
    [in, out, k], the transformer's Conv1D w [n_in, n_out]): nothing is transposed;
    fp16/bf16/fp64 tensors become float32;
  - hyperparameters: the structure (levels, downs_t, strides_t, widths, depths,
    multipliers, emb_width, l_bins; a prior's bins, width, depth, n_ctx, m_attn, m_mlp,
    untied output, conditioner and label embeddings) is read from the tensor shapes;
    the rest comes from, lowest first, the --preset (jukebox_44k for a VQ-VAE), the
    checkpoint's 'hps' (reference names, e.g. hvqvae_multipliers, prior_width), then
    --set key=value (our names, values as JSON: --set blocks=64 --set y_bins=[10,100]);
  - checks: every tensor must be one the rebuilt model has, with its shape, and the model
    must find all of its own; otherwise one line names the first unmapped or missing
    keys. When this checkout's build/jbx (or $JBX_EXE) exists the written file is then
    loaded by models.load as a last check (--no-check skips it).
Not converted (an error says so): the lyrics priors (prime_prior, encoder-decoder
attention) and explicit t_ranges.
"""
import argparse
import json
import math
import os
import subprocess
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "fixtures"))
from safetensors_reference import write_safetensors  # noqa: E402


class ConvertError(Exception):
    pass


def names_list(names, n=5):
    names = sorted(names)
    more = f" (and {len(names) - n} more)" if len(names) > n else ""
    return ", ".join(names[:n]) + more


def count(sd, fmt, start=0):
    """How many consecutive i from `start` have fmt.format(i) in sd."""
    i = start
    while fmt.format(i) in sd:
        i += 1
    return i - start


def shape_of(sd, name):
    if name not in sd:
        raise ConvertError(f"missing key {name} (the state dict does not look like a reference model of this kind)")
    return list(sd[name].shape)


# ------------------------------------------------------------------------------- VQ-VAE

# Reference hps name -> ours, for the hyperparameters the shapes do not give.
VQVAE_HPS = {"sr": "sr", "l_mu": "mu", "revival_threshold": "threshold", "commit": "commit",
             "spectral": "spectral", "multispectral": "multispectral", "loss_fn": "loss_fn",
             "lmix_l1": "lmix_l1", "lmix_l2": "lmix_l2", "lmix_linf": "lmix_linf", "linf_k": "linf_k",
             "dilation_growth_rate": "dilation_growth_rate", "dilation_cycle": "dilation_cycle",
             "vqvae_reverse_decoder_dilation": "reverse_decoder_dilation"}


def resnet_shapes(out, prefix, width, hidden, depth):
    for b in range(depth):
        p = f"{prefix}.{b}.model."
        out[p + "1.weight"], out[p + "1.bias"] = [hidden, width, 3], [hidden]
        out[p + "3.weight"], out[p + "3.bias"] = [width, hidden, 1], [width]


def vqvae_structure(sd):
    levels = count(sd, "encoders.{}.level_blocks.0.model.0.0.weight")
    if levels == 0:
        raise ConvertError("no encoders.0.level_blocks.0.model.0.0.weight: not a reference VQ-VAE state dict")
    l_bins, emb = shape_of(sd, "bottleneck.level_blocks.0.k")
    widths, depths, downs, strides, m_conv = [], [], [], [], None
    for l in range(levels):
        p = f"encoders.{l}.level_blocks.{l}.model."
        w, _, k = shape_of(sd, p + "0.0.weight")
        widths.append(w)
        strides.append(k // 2)
        downs.append(count(sd, p + "{}.0.weight"))
        depths.append(count(sd, p + "0.1.model.{}.model.1.weight"))
        m_conv = shape_of(sd, p + "0.1.model.0.model.1.weight")[0] / w
    width = math.gcd(*widths)
    mults = [w // width for w in widths]
    if any(d % m for d, m in zip(depths, mults)) or len({d // m for d, m in zip(depths, mults)}) != 1:
        raise ConvertError(f"per-level widths {widths} and depths {depths} do not share one multiplier per level")
    return {"levels": levels, "downs_t": downs, "strides_t": strides, "width": width, "depth": depths[0] // mults[0],
            "multipliers": mults, "emb_width": emb, "l_bins": l_bins, "m_conv": m_conv}


def vqvae_expected(hp):
    """Every tensor name -> shape of our VQ-VAE (the reference's names; k_sum and k_elem
    are ours)."""
    out, emb = {}, hp["emb_width"]
    for L in range(hp["levels"]):
        w, d = hp["width"] * hp["multipliers"][L], hp["depth"] * hp["multipliers"][L]
        hid = int(hp["m_conv"] * w)
        for l in range(L + 1):
            s, n = hp["strides_t"][l], hp["downs_t"][l]
            p = f"encoders.{L}.level_blocks.{l}.model."
            for i in range(n):
                out[f"{p}{i}.0.weight"], out[f"{p}{i}.0.bias"] = [w, 1 if (l == 0 and i == 0) else (emb if i == 0 else w), 2 * s], [w]
                resnet_shapes(out, f"{p}{i}.1.model", w, hid, d)
            out[f"{p}{n}.weight"], out[f"{p}{n}.bias"] = [emb, w, 3], [emb]
            p = f"decoders.{L}.level_blocks.{l}.model."
            out[p + "0.weight"], out[p + "0.bias"] = [w, emb, 3], [w]
            for i in range(1, n + 1):
                resnet_shapes(out, f"{p}{i}.0.model", w, hid, d)
                cout = emb if i == n else w
                out[f"{p}{i}.1.weight"], out[f"{p}{i}.1.bias"] = [w, cout, 2 * s], [cout]
        out[f"decoders.{L}.out.weight"], out[f"decoders.{L}.out.bias"] = [1, emb, 3], [1]
        b = f"bottleneck.level_blocks.{L}."
        out[b + "k"], out[b + "k_sum"], out[b + "k_elem"] = [hp["l_bins"], emb], [hp["l_bins"], emb], [hp["l_bins"]]
    return out


def convert_vqvae(sd, hps, preset, sets):
    hp = {"preset": preset or "jukebox_44k"}
    for ref, ours in VQVAE_HPS.items():
        if hps.get(ref) is not None:
            hp[ours] = hps[ref]
    hp.update(vqvae_structure(sd))
    hp.update(sets)
    if hp.get("dilation_cycle") is None:
        hp.pop("dilation_cycle", None)
    tensors = dict(sd)
    for L in range(hp["levels"]):
        k = tensors.get(f"bottleneck.level_blocks.{L}.k")
        if k is not None:
            tensors.setdefault(f"bottleneck.level_blocks.{L}.k_sum", k.clone())
            tensors.setdefault(f"bottleneck.level_blocks.{L}.k_elem", torch.ones(k.shape[0]))
    check(tensors, vqvae_expected(hp))
    bw = hps.get("bandwidth") or {}
    meta = {"format": "jukebox-c vqvae 1", "hparams": hp,
            "bandwidth": {k: float(bw.get(k, 1.0)) for k in ("l1", "l2", "spec")},
            "bottleneck": [{"initialised": True} for _ in range(hp["levels"])]}
    return tensors, meta


# -------------------------------------------------------------------------------- Prior

PRIOR_HPS = {"prior_width": "width", "prior_depth": "depth", "n_ctx": "n_ctx", "heads": "heads",
             "attn_order": "attn_order", "blocks": "blocks", "init_scale": "init_scale", "m_attn": "m_attn",
             "m_mlp": "m_mlp", "zero_out": "zero_out", "res_scale": "res_scale", "merged_decoder": "merged_decoder",
             "c_res": "c_res", "cond_width": "cond_width", "cond_depth": "cond_depth", "cond_m_conv": "cond_m_conv",
             "cond_dilation_growth_rate": "cond_dilation_growth_rate",
             "cond_dilation_cycle": "cond_dilation_cycle", "cond_res_scale": "cond_res_scale",
             "cond_zero_out": "cond_zero_out", "cond_c_res": "cond_c_res", "t_bins": "t_bins",
             "max_bow_genre_size": "max_bow_genre_size", "min_duration": "min_duration",
             "max_duration": "max_duration", "sr": "sr"}


PRIOR_REF = {ours: ref for ref, ours in PRIOR_HPS.items()}


def prior_structure(sd, hps):
    bins, w = shape_of(sd, "prior.x_emb.weight")
    s = {"bins": bins, "width": w, "n_ctx": shape_of(sd, "prior.pos_emb.pos_emb")[0],
         "depth": count(sd, "prior.transformer._attn_mods.{}.attn.c_attn.w")}
    if s["depth"] == 0:
        raise ConvertError("no prior.transformer._attn_mods.0.attn.c_attn.w: not a reference prior state dict")
    s["m_attn"] = shape_of(sd, "prior.transformer._attn_mods.0.attn.c_attn.w")[1] / (3 * w)
    s["m_mlp"] = shape_of(sd, "prior.transformer._attn_mods.0.mlp.c_fc.w")[1] / w
    out = sd.get("prior.x_out.weight")
    if "merged_decoder" in hps:
        s["merged_decoder"] = bool(hps["merged_decoder"])
    else:  # tied: the state dict lists the embedding a second time as x_out
        s["merged_decoder"] = out is not None and not torch.equal(out, sd["prior.x_emb.weight"])
    c = "conditioner_blocks.0."
    if c + "x_emb.weight" in sd:
        cw = shape_of(sd, c + "cond.model.0.weight")[0]
        name = "blocks" if c + "cond.model.1.0.blocks.0.model.1.weight" in sd else "model"
        s.update(x_cond=True, cond_bins=shape_of(sd, c + "x_emb.weight")[0], cond_width=cw,
                 cond_down_t=count(sd, c + "cond.model.{}.1.weight", 1),
                 cond_stride_t=shape_of(sd, c + "cond.model.1.1.weight")[2] // 2,
                 cond_depth=count(sd, c + "cond.model.1.0." + name + ".{}.model.1.weight"),
                 cond_m_conv=shape_of(sd, c + "cond.model.1.0." + name + ".0.model.1.weight")[0] / cw,
                 cond_c_res=1 if name == "blocks" else 0)
    if "y_emb.artist_emb.emb.weight" in sd:
        s["y_bins"] = [shape_of(sd, "y_emb.bow_genre_emb.emb.weight")[0], shape_of(sd, "y_emb.artist_emb.emb.weight")[0]]
        if "y_emb.total_length_emb.emb.weight" in sd:
            s["t_bins"] = shape_of(sd, "y_emb.total_length_emb.emb.weight")[0]
        s["labels"] = "v3" if hps.get("labels_v3") else "v2"
    return s


def prior_expected(hp):
    w, out = hp["width"], {}
    S, M = int(hp["m_attn"] * w), int(hp["m_mlp"] * w)
    out["prior.x_emb.weight"], out["prior.pos_emb.pos_emb"] = [hp["bins"], w], [hp["n_ctx"], w]
    if not hp.get("labels"):
        out["prior.start_token"] = [1, w]
    if hp.get("merged_decoder"):
        out["prior.x_out.weight"] = [hp["bins"], w]
    for d in range(hp["depth"]):
        p = f"prior.transformer._attn_mods.{d}."
        for ln in ("ln_0", "ln_1"):
            out[p + ln + ".weight"], out[p + ln + ".bias"] = [w], [w]
        for name, n_in, n_out in (("attn.c_attn", w, 3 * S), ("attn.c_proj", S, w), ("mlp.c_fc", w, M),
                                  ("mlp.c_proj", M, w)):
            out[p + name + ".w"], out[p + name + ".b"] = [n_in, n_out], [n_out]
    if hp.get("labels"):
        out["y_emb.bow_genre_emb.emb.weight"] = [hp["y_bins"][0], w]
        out["y_emb.artist_emb.emb.weight"] = [hp["y_bins"][1], w]
        if not hp.get("x_cond"):
            for e in ("total_length_emb", "absolute_pos_emb", "relative_pos_emb"):
                out[f"y_emb.{e}.emb.weight"] = [hp["t_bins"], w]
    if hp.get("x_cond"):
        c, cw = "conditioner_blocks.0.", hp["cond_width"]
        hid, n = int(hp.get("cond_m_conv", 1.0) * cw), hp["cond_down_t"]
        out[c + "x_emb.weight"] = [hp["cond_bins"], w]
        out[c + "cond.model.0.weight"], out[c + "cond.model.0.bias"] = [cw, w, 3], [cw]
        name = "blocks" if hp.get("cond_c_res") else "model"
        for i in range(1, n + 1):
            resnet_shapes(out, f"{c}cond.model.{i}.0.{name}", cw, hid, hp["cond_depth"])
            cout = w if i == n else cw
            out[f"{c}cond.model.{i}.1.weight"] = [cw, cout, 2 * hp["cond_stride_t"]]
            out[f"{c}cond.model.{i}.1.bias"] = [cout]
        out[c + "ln.weight"], out[c + "ln.bias"] = [w], [w]
    return out


def convert_prior(sd, hps, preset, sets):
    lyrics = [k for k in sd if k.startswith(("prime_", "prior.transformer._attn_mods.")) and
              (k.startswith("prime_") or ".c_enc_kv." in k)]
    if lyrics:
        raise ConvertError(f"lyrics priors are not supported yet (keys {names_list(lyrics, 3)})")
    if hps.get("t_ranges") is not None:
        raise ConvertError("explicit t_ranges are not supported yet (our label conditioner derives them from "
                           "min_duration, max_duration and sr)")
    hp = {"preset": preset or "custom"}
    for ref, ours in PRIOR_HPS.items():
        if hps.get(ref) is not None:
            hp[ours] = hps[ref]
    if hps.get("y_bins") and hps.get("labels"):
        hp["y_bins"] = list(hps["y_bins"])
    hp.update(prior_structure(sd, {k: v for k, v in {**hps, **sets}.items() if k == "merged_decoder"}))
    hp.update(sets)
    # What the shapes cannot tell and a wrong guess would silently change the outputs.
    needed = ["heads", "attn_order", "blocks"] + (["cond_dilation_growth_rate", "cond_dilation_cycle",
                                                   "cond_res_scale"] if hp.get("x_cond") else [])
    unknown = [k for k in needed if k not in sets and PRIOR_REF.get(k, k) not in hps]
    if unknown and not preset:
        raise ConvertError(f"the checkpoint has no hps for {', '.join(unknown)}: give them with --set KEY=VALUE "
                           "(or --preset)")
    tensors = dict(sd)
    if not hp.get("merged_decoder"):
        tensors.pop("prior.x_out.weight", None)
    check(tensors, prior_expected(hp))
    return tensors, {"format": "jukebox-c prior 1", "hparams": hp, "data": False, "label_lists": False}


# -------------------------------------------------------------------------------- common

def check(tensors, expected):
    unmapped = [k for k in tensors if k not in expected]
    if unmapped:
        raise ConvertError(f"unmapped keys (our model has no such tensor): {names_list(unmapped)}")
    missing = [k for k in expected if k not in tensors]
    if missing:
        raise ConvertError(f"missing keys (our model needs them): {names_list(missing)}")
    for k, s in expected.items():
        if list(tensors[k].shape) != s:
            raise ConvertError(f"{k} has shape {list(tensors[k].shape)}, the model expects {s}")


def parse_sets(items):
    sets = {}
    for item in items or []:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise ConvertError(f"--set {item}: expected key=value")
        try:
            sets[key] = json.loads(value)
        except json.JSONDecodeError:
            sets[key] = value
    return sets


def load_reference(path):
    try:
        ck = torch.load(path, map_location="cpu")
    except Exception as e:  # noqa: BLE001 - any unreadable file gets one line
        raise ConvertError(f"cannot read {path} with torch.load: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
    if isinstance(ck, dict) and isinstance(ck.get("model"), dict):
        sd, hps = ck["model"], ck.get("hps") or {}
    elif isinstance(ck, dict) and ck and all(torch.is_tensor(v) for v in ck.values()):
        sd, hps = ck, {}  # a bare state dict
    else:
        raise ConvertError(f"{path} is not a reference checkpoint (a dict with 'model', the state dict)")
    out = {}
    for k, v in sd.items():
        if not torch.is_tensor(v):
            raise ConvertError(f"{path}: state dict entry {k} is not a tensor")
        k = k[len("module."):] if k.startswith("module.") else k
        out[k] = v.detach().to(torch.float32).contiguous() if v.is_floating_point() else v
    return out, dict(hps)


def convert(kind, src, dst, preset=None, sets=None, check_load=True):
    sd, hps = load_reference(src)
    fn = {"vqvae": convert_vqvae, "prior": convert_prior}[kind]
    tensors, meta = fn(sd, hps, preset, sets or {})
    for k, v in tensors.items():
        if v.is_floating_point() is False:
            raise ConvertError(f"{k} has dtype {v.dtype}, expected floating point")
    metadata = {"format": "pt", "jukebox": json.dumps(meta), "jukebox_state": "[]"}
    write_safetensors(dst, {k: ("F32", v) for k, v in tensors.items()}, metadata)
    jbx = os.environ.get("JBX_EXE") or os.path.join(HERE, "..", "build", "jbx")
    if check_load and os.path.exists(jbx):
        lua = 'require("jukebox.models").load(arg[1])'
        r = subprocess.run([jbx, "-e", f"arg = {{[1] = {json.dumps(os.path.abspath(dst))}}}; {lua}"], capture_output=True,
                           text=True, cwd=os.path.join(HERE, ".."))
        if r.returncode != 0:
            os.remove(dst)
            lines = (r.stderr or r.stdout).strip().splitlines()
            raise ConvertError(f"the written file does not load: {lines[0] if lines else 'jbx failed'}")
    return meta


def main(argv=None):
    ap = argparse.ArgumentParser(description="Reference Jukebox .pth.tar -> jukebox-c safetensors")
    ap.add_argument("kind", choices=["vqvae", "prior"])
    ap.add_argument("src", help="the reference checkpoint (.pth.tar)")
    ap.add_argument("dst", help="the safetensors file to write")
    ap.add_argument("--preset", help="our preset under the hyperparameters (vqvae: jukebox_44k)")
    ap.add_argument("--set", action="append", metavar="KEY=VALUE", help="a hyperparameter (our name, JSON value)")
    ap.add_argument("--no-check", action="store_true", help="do not load the result with build/jbx ($JBX_EXE)")
    a = ap.parse_args(argv)
    try:
        meta = convert(a.kind, a.src, a.dst, a.preset, parse_sets(a.set), not a.no_check)
    except ConvertError as e:
        print(f"convert_jukebox: {e}", file=sys.stderr)
        return 1
    hp = meta["hparams"]
    print(f"wrote {a.dst}: {a.kind} " + ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(hp.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
