#!/usr/bin/python3
"""An independent, deliberately plain numpy DeepSeek-V3 forward pass (float64), for checking Spex's logits.

Written from DeepSeek-V3's inference/model.py and the Hugging Face config semantics, sharing no code
with the engine: safetensors are read here (header JSON + numpy.frombuffer; BF16 as uint16 << 16;
F8_E4M3 via a 256-entry table times the weight_scale_inv blocks), attention is the textbook form
(keys and values expanded per head from kv_b_proj, causal softmax), not the engine's absorbed form.

  h = embed(tokens); per layer: h += MLA(rmsnorm(h)); h += FFN(rmsnorm(h)) (dense or MoE + shared)
  logits = lm_head(rmsnorm(h))
  MTP (--mtp): row t uses the main model's final hidden (after model.norm) at t and the embedding of
  token t+1 (for the last row: the main model's argmax), x = eh_proj([enorm(e); hnorm(h)]) -> decoder
  block at position t with its own attention -> shared_head.norm -> shared_head.head. Row t predicts
  token t+2.

Usage: deepseek_ref.py MODEL_DIR --tokens 5,17,42 [--mtp]
Prints {"tokens": [...], "logits": [[...], ...]} (+ "mtp_next_token", "mtp_logits" with --mtp).
"""
import argparse
import json
import math
import os
import struct
import sys

import numpy as np

# ----------------------------------------------------------------------------- safetensors


def _e4m3_table():
    t = np.zeros(256, dtype=np.float64)
    for b in range(256):
        sign = -1.0 if b & 0x80 else 1.0
        e, m = (b >> 3) & 0xF, b & 0x7
        if e == 0xF and m == 0x7:
            t[b] = np.nan
        elif e == 0:
            t[b] = sign * (m / 8.0) * 2.0 ** -6
        else:
            t[b] = sign * (1.0 + m / 8.0) * 2.0 ** (e - 7)
    return t


E4M3 = _e4m3_table()


class Store:
    def __init__(self, model_dir, block):
        self.block = block
        self.where = {}
        idx = os.path.join(model_dir, "model.safetensors.index.json")
        files = sorted(set(json.load(open(idx))["weight_map"].values())) if os.path.exists(idx) \
            else ["model.safetensors"]
        for fn in files:
            data = open(os.path.join(model_dir, fn), "rb").read()
            n = struct.unpack("<Q", data[:8])[0]
            header = json.loads(data[8:8 + n])
            for name, info in header.items():
                if name != "__metadata__":
                    self.where[name] = (data, 8 + n, info)

    def has(self, name):
        return name in self.where

    def raw(self, name):
        data, base, info = self.where[name]
        a, b = info["data_offsets"]
        buf, shape, dt = data[base + a:base + b], info["shape"], info["dtype"]
        if dt == "F32":
            x = np.frombuffer(buf, dtype="<f4").astype(np.float64)
        elif dt == "F16":
            x = np.frombuffer(buf, dtype="<f2").astype(np.float64)
        elif dt == "BF16":
            x = (np.frombuffer(buf, dtype="<u2").astype(np.uint32) << 16).view(np.float32).astype(np.float64)
        elif dt == "F8_E4M3":
            x = E4M3[np.frombuffer(buf, dtype=np.uint8)]
        elif dt == "F64":
            x = np.frombuffer(buf, dtype="<f8").astype(np.float64)
        else:
            raise ValueError(f"{name}: dtype {dt} not supported")
        return x.reshape(shape), dt

    def get(self, name):
        x, dt = self.raw(name)
        if dt == "F8_E4M3":
            s, _ = self.raw(name + "_scale_inv")
            b0, b1 = self.block
            r, c = x.shape
            x = x * np.repeat(np.repeat(s, b0, axis=0), b1, axis=1)[:r, :c]
        return x


# ----------------------------------------------------------------------------- model pieces


def rmsnorm(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def silu(x):
    return x / (1.0 + np.exp(-x))


def rope_tables(cfg, n):
    """cos, sin [n, d/2]: DeepSeek-V3 precompute_freqs_cis (YaRN blend), HF YaRN mscale on cos/sin."""
    dim, base = cfg["qk_rope_head_dim"], cfg.get("rope_theta", 10000.0)
    freqs = 1.0 / base ** (np.arange(0, dim, 2, dtype=np.float64) / dim)
    rs = cfg.get("rope_scaling") or {}
    cs = 1.0
    if rs.get("type", rs.get("rope_type")) == "yarn":
        factor, orig = rs["factor"], rs["original_max_position_embeddings"]
        bf, bs = rs.get("beta_fast", 32), rs.get("beta_slow", 1)

        def corr_dim(rot):
            return dim * math.log(orig / (rot * 2 * math.pi)) / (2 * math.log(base))

        low, high = max(math.floor(corr_dim(bf)), 0), min(math.ceil(corr_dim(bs)), dim - 1)
        if low == high:
            high += 0.001
        ramp = np.clip((np.arange(dim // 2, dtype=np.float64) - low) / (high - low), 0, 1)
        smooth = 1 - ramp
        freqs = freqs / factor * (1 - smooth) + freqs * smooth

        def ms(scale, m):
            return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

        cs = ms(factor, rs.get("mscale", 1)) / ms(factor, rs.get("mscale_all_dim", 0))
    ang = np.outer(np.arange(n, dtype=np.float64), freqs)
    return np.cos(ang) * cs, np.sin(ang) * cs


def rope(x, cos, sin):
    """x [..., n, d]: rotate interleaved pairs (x[2i], x[2i+1]) as complex numbers."""
    z = x[..., 0::2] + 1j * x[..., 1::2]
    z = z * (cos + 1j * sin)
    out = np.empty_like(x)
    out[..., 0::2], out[..., 1::2] = z.real, z.imag
    return out


def softmax_scale(cfg):
    s = (cfg["qk_nope_head_dim"] + cfg["qk_rope_head_dim"]) ** -0.5
    rs = cfg.get("rope_scaling") or {}
    if rs.get("type", rs.get("rope_type")) == "yarn" and rs.get("mscale_all_dim"):
        m = 0.1 * rs["mscale_all_dim"] * math.log(rs["factor"]) + 1.0 if rs["factor"] > 1 else 1.0
        s *= m * m
    return s


def attention(st, cfg, p, x, cos, sin):
    n = x.shape[0]
    H, dn, dr, dv = (cfg["num_attention_heads"], cfg["qk_nope_head_dim"], cfg["qk_rope_head_dim"],
                     cfg["v_head_dim"])
    L, eps = cfg["kv_lora_rank"], cfg["rms_norm_eps"]
    if cfg.get("q_lora_rank"):
        q = rmsnorm(x @ st.get(p + "q_a_proj.weight").T, st.get(p + "q_a_layernorm.weight"), eps)
        q = q @ st.get(p + "q_b_proj.weight").T
    else:
        q = x @ st.get(p + "q_proj.weight").T
    q = q.reshape(n, H, dn + dr).transpose(1, 0, 2)                       # [H, n, dn+dr]
    q = np.concatenate([q[..., :dn], rope(q[..., dn:], cos, sin)], axis=-1)
    kv = x @ st.get(p + "kv_a_proj_with_mqa.weight").T                    # [n, L + dr]
    c = rmsnorm(kv[:, :L], st.get(p + "kv_a_layernorm.weight"), eps)
    k_pe = rope(kv[:, L:], cos, sin)                                      # [n, dr], shared by heads
    kvb = (c @ st.get(p + "kv_b_proj.weight").T).reshape(n, H, dn + dv).transpose(1, 0, 2)
    k = np.concatenate([kvb[..., :dn], np.broadcast_to(k_pe, (H, n, dr))], axis=-1)
    v = kvb[..., dn:]
    s = q @ k.transpose(0, 2, 1) * softmax_scale(cfg)                     # [H, n, n]
    s = np.where(np.tril(np.ones((n, n), dtype=bool)), s, -np.inf)
    s = np.exp(s - s.max(axis=-1, keepdims=True))
    s /= s.sum(axis=-1, keepdims=True)
    o = (s @ v).transpose(1, 0, 2).reshape(n, H * dv)
    return o @ st.get(p + "o_proj.weight").T


def ffn(st, p, x):
    return (silu(x @ st.get(p + "gate_proj.weight").T) * (x @ st.get(p + "up_proj.weight").T)) @ \
        st.get(p + "down_proj.weight").T


def moe(st, cfg, p, x):
    E, K = cfg["n_routed_experts"], cfg["num_experts_per_tok"]
    G, TG = cfg.get("n_group") or 1, cfg.get("topk_group") or 1
    logits = x @ st.get(p + "gate.weight").T
    if cfg.get("scoring_func", "sigmoid") == "softmax":
        e = np.exp(logits - logits.max(axis=-1, keepdims=True))
        scores = e / e.sum(axis=-1, keepdims=True)
    else:
        scores = 1.0 / (1.0 + np.exp(-logits))
    bias = st.get(p + "gate.e_score_correction_bias") if st.has(p + "gate.e_score_correction_bias") else None
    method = cfg.get("topk_method", "noaux_tc")
    y = np.zeros_like(x)
    for i in range(x.shape[0]):
        b = scores[i] + (bias if bias is not None else 0.0)
        if G > 1 and method != "greedy":
            g = b.reshape(G, -1)
            gs = np.sort(g, axis=-1)[:, -2:].sum(-1) if method == "noaux_tc" else g.max(-1)
            keep = sorted(range(G), key=lambda j: (-gs[j], j))[:TG]
            mask = np.full(G, True)
            mask[keep] = False
            b = np.where(np.repeat(mask, E // G), -np.inf, b)
        idx = sorted(range(E), key=lambda e: (-b[e], e))[:K]
        w = scores[i, idx]
        if cfg.get("norm_topk_prob", True) and K > 1:
            w = w / w.sum()
        w = w * cfg.get("routed_scaling_factor", 1.0)
        for e, we in zip(idx, w):
            y[i] += we * ffn(st, f"{p}experts.{e}.", x[i:i + 1])[0]
    if cfg.get("n_shared_experts"):
        y += ffn(st, p + "shared_experts.", x)
    return y


def decoder_layer(st, cfg, l, h, cos, sin):
    p, eps = f"model.layers.{l}.", cfg["rms_norm_eps"]
    h = h + attention(st, cfg, p + "self_attn.", rmsnorm(h, st.get(p + "input_layernorm.weight"), eps), cos, sin)
    x = rmsnorm(h, st.get(p + "post_attention_layernorm.weight"), eps)
    is_moe = (cfg.get("n_routed_experts") and l >= cfg.get("first_k_dense_replace", 0)
              and l % cfg.get("moe_layer_freq", 1) == 0)
    return h + (moe(st, cfg, p + "mlp.", x) if is_moe else ffn(st, p + "mlp.", x))


def forward(model_dir, tokens, mtp):
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    q = cfg.get("quantization_config") or {}
    st = Store(model_dir, q.get("weight_block_size", [128, 128]))
    eps, n, Lm = cfg["rms_norm_eps"], len(tokens), cfg["num_hidden_layers"]
    cos, sin = rope_tables(cfg, n)
    embed = st.get("model.embed_tokens.weight")
    h = embed[tokens]
    for l in range(Lm):
        h = decoder_layer(st, cfg, l, h, cos, sin)
    hidden = rmsnorm(h, st.get("model.norm.weight"), eps)
    head = st.get("lm_head.weight") if st.has("lm_head.weight") else embed
    logits = hidden @ head.T
    out = {"tokens": tokens, "logits": logits.tolist()}
    if mtp:
        nxt = int(np.argmax(logits[-1]))
        shifted = tokens[1:] + [nxt]
        p = f"model.layers.{Lm}."
        e = rmsnorm(embed[shifted], st.get(p + "enorm.weight"), eps)
        hh = rmsnorm(hidden, st.get(p + "hnorm.weight"), eps)
        x = np.concatenate([e, hh], axis=-1) @ st.get(p + "eh_proj.weight").T
        x = decoder_layer(st, cfg, Lm, x, cos, sin)
        x = rmsnorm(x, st.get(p + "shared_head.norm.weight"), eps)
        out["mtp_next_token"] = nxt
        head = p + "shared_head.head.weight"   # may be left out: then it is lm_head (shared in training)
        out["mtp_logits"] = (x @ (st.get(head) if st.has(head) else st.get("lm_head.weight")).T).tolist()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("--tokens", required=True)
    ap.add_argument("--mtp", action="store_true")
    a = ap.parse_args()
    tokens = [int(t) for t in a.tokens.split(",") if t != ""]
    json.dump(forward(a.model_dir, tokens, a.mtp), sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
