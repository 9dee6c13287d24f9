"""Depth up-scaling: grow a trained Spex model into a deeper one that computes the same function.

Each layer i of the source becomes layers [i*g, i*g+g): the first a copy, the other g-1 copies whose
output projections (self_attn.o_proj and every down_proj of the MLP / experts / shared expert) are zero,
so each adds exactly 0 to the residual stream at the start (LLaMA Pro's block expansion, Wu et al. 2024).
Training then moves from the source model's loss instead of from scratch: on 2 cores that is the
difference between a deep model that is worse than the shallow one and one that is better (issue 13).
The MTP module (source layer L) becomes layer L*g; first_k_dense_replace scales by g.
"""
import json
import torch
import sfile

ZEROED = ("self_attn.o_proj.weight", "down_proj.weight")


def grown_config(cfg, src_config_path, g):
    src = json.load(open(src_config_path))
    out = dict(cfg)
    for k in cfg:   # the source's shape, deeper
        if k in src and k not in ("max_position_embeddings",):
            out[k] = src[k]
    out["num_hidden_layers"] = src["num_hidden_layers"] * g
    out["first_k_dense_replace"] = src["first_k_dense_replace"] * g
    return out


def _map(name, L, g):
    """source tensor name -> [(grown name, zeroed?)]."""
    if not name.startswith("model.layers."):
        return [(name, False)]
    i, rest = name[len("model.layers."):].split(".", 1)
    i = int(i)
    if i == L:   # the MTP module
        return [(f"model.layers.{L * g}.{rest}", False)]
    return [(f"model.layers.{i * g + j}.{rest}", j > 0 and rest.endswith(ZEROED)) for j in range(g)]


def grow_into(m, safetensors_path, g):
    """Load the source weights into model m (built with grown_config); returns the names of the parameters
    copied unzeroed from the source (the "old" ones, which may train at a lower LR)."""
    src = sfile.load(safetensors_path)
    L = m.c.num_hidden_layers // g
    sd = m.state_dict()
    old, seen = set(), set()
    for name, t in src.items():
        for dst, zero in _map(name, L, g):
            assert dst in sd and sd[dst].shape == t.shape, (name, dst)
            sd[dst].copy_(torch.zeros_like(t) if zero else t)
            seen.add(dst)
            if not zero and (dst == name or dst.split(".")[2] == str(int(name.split(".")[2]) * g)):
                old.add(dst)
    shared = {"model.layers.%d.embed_tokens.weight" % (L * g), "model.layers.%d.shared_head.head.weight" % (L * g)}
    missing = set(sd) - seen - shared
    assert not missing, sorted(missing)[:5]
    ptrs = {sd[n].data_ptr() for n in old}   # by storage: tied tensors are named once, not always by their old name
    return {n for n, p in m.named_parameters() if p.data_ptr() in ptrs}


def grown_from_names(m, g):
    """The "old" parameter names of a grown model (for --resume)."""
    L = m.c.num_hidden_layers // g
    out = set()
    for n, _ in m.named_parameters():
        if not n.startswith("model.layers."):
            out.add(n)
        else:
            i = int(n.split(".")[2])
            if i == L * g or i % g == 0:
                out.add(n)
    return out
