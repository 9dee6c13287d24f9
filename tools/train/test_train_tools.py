#!/usr/bin/python3
"""Tests of the trainer's export path (ctest tools_train): E4M3 encoding against an independent decoder,
the FP8 block export round trip, and depth up-scaling (grow.py) preserving the model's function.
CPU only, a few seconds: a tiny random model, no data files."""
import os, sys, tempfile
import numpy as np
import torch
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model as M, sfile, grow as G
from train import BASE, PRESETS

fails = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond: fails.append(what)


def e4m3_value(b):
    """Independent decoder (the OCP FP8 E4M3FN definition, written out per case)."""
    s = -1.0 if b & 0x80 else 1.0
    e, m = (b >> 3) & 0xF, b & 7
    if e == 0: return s * m / 8.0 * 2.0 ** -6
    return s * (1 + m / 8.0) * 2.0 ** (e - 7)


# 1. every finite E4M3 value encodes to its own byte, and the grid rounding lands on those values
codes = [b for b in range(256) if (b & 0x7F) != 0x7F and b != 0x80]   # no NaN; -0 encodes as +0's sign bit too
vals = np.array([e4m3_value(b) for b in codes], dtype=np.float32)
check(list(sfile.e4m3_bytes(vals)) == codes, "e4m3_bytes: all 253 finite non-(-0) values encode to their own byte")
check(np.array_equal(sfile._e4m3_to_f32(np.array(codes, dtype=np.uint8)), vals), "_e4m3_to_f32 agrees with the reference decoder")
torch.manual_seed(0)
w = torch.randn(300, 200) * torch.logspace(-4, 1, 200)    # columns over 5 decades: subnormals and full range
q, scale = M.fp8_block_parts(w)
check(tuple(scale.shape) == (3, 2), "fp8_block_parts: one scale per 128x128 block, edge blocks included")
grid = torch.tensor(sorted(set(abs(float(v)) for v in vals)))
v = (w / scale.repeat_interleave(128, 0).repeat_interleave(128, 1)[:300, :200]).abs().flatten()
nearest = grid[(v[:, None] - grid[None, :]).abs().argmin(1)]
qa = q.abs().flatten()
check(bool(torch.isin(qa, grid).all()) and bool(((qa - v).abs() <= (nearest - v).abs() * (1 + 1e-6)).all()),
      "fp8_block_parts: every value is an E4M3 value nearest to w / scale")
blocks = [q[i:i + 128, j:j + 128].abs().max() for i in (0, 128, 256) for j in (0, 128)]
check(all(float(b) == 448 for b in blocks), "each block's largest weight maps to 448")

# 2. export round trip: sfile writes E4M3 bytes + scale_inv, load gives back fp8_block_quantize(w) exactly
with tempfile.TemporaryDirectory() as d:
    sfile.save(f"{d}/t.safetensors", {"a.weight": q, "a.weight_scale_inv": scale}, {"a.weight": "F8_E4M3", "a.weight_scale_inv": "F32"})
    back = sfile.load(f"{d}/t.safetensors")
    check(set(back) == {"a.weight"} and torch.equal(back["a.weight"], M.fp8_block_quantize(w)),
          "F8_E4M3 save/load returns the dequantized block weight bit for bit")

# 3. growing a model by 3 keeps its logits and MTP logits (zeroed output projections add exactly 0)
cfg = dict(BASE, **PRESETS["tiny"], max_position_embeddings=64)
src = M.DeepseekV3(cfg).eval()
for p in src.parameters():   # a non-trivial function: random biases too
    if p.dim() == 1: torch.nn.init.normal_(p, 1.0, 0.1)
with tempfile.TemporaryDirectory() as d:
    sd = {k: v for k, v in src.state_dict().items()
          if not (k.startswith("model.layers.") and k.endswith(("embed_tokens.weight", "shared_head.head.weight")))}
    sfile.save(f"{d}/model.safetensors", sd, {k: "F32" for k in sd})
    import json
    json.dump(cfg, open(f"{d}/config.json", "w"))
    gcfg = G.grown_config(cfg, f"{d}/config.json", 3)
    big = M.DeepseekV3(gcfg).eval()
    old = G.grow_into(big, f"{d}/model.safetensors", 3)
check(gcfg["num_hidden_layers"] == 3 * cfg["num_hidden_layers"] and gcfg["first_k_dense_replace"] == 3, "grown config: 3x layers, 3x dense")
x = torch.randint(0, cfg["vocab_size"], (2, 40))
with torch.no_grad():
    a, am = src(x); b, bm = big(x)
check(float((a - b).abs().max()) < 1e-5 and float((am - bm).abs().max()) < 1e-5,
      f"grown model computes the same logits (max diff {float((a - b).abs().max()):.1e}, MTP {float((am - bm).abs().max()):.1e})")
names = {n for n, _ in big.named_parameters()}
head = "model.layers.%d.shared_head.head.weight" % gcfg["num_hidden_layers"]   # lm_head's name in named_parameters
check("model.layers.3.self_attn.o_proj.weight" in old and "model.layers.4.self_attn.o_proj.weight" not in old and
      ("lm_head.weight" in old or head in old),
      "old-parameter set: copies are old, the zeroed new layers are not")
check(G.grown_from_names(big, 3) >= old and all(n in names for n in old), "grown_from_names covers grow_into's set (resume)")

print(f"{len(fails)} failure(s)")
sys.exit(1 if fails else 0)
