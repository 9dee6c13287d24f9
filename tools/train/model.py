"""DeepSeek-V3 architecture in plain PyTorch (training + float32 reference inference).

Semantics follow DeepSeek-V3's official inference/model.py (naive attention path):
RMSNorm in float32; MLA with q-LoRA, shared k_pe, interleaved-pair RoPE (view_as_complex convention);
dense SwiGLU for the first `first_k_dense_replace` layers; sigmoid-scored, group-limited (noaux_tc)
MoE with e_score_correction_bias used only for selection; one MTP module (HF layout: model.layers.L).
Module names equal the Hugging Face checkpoint tensor names, so state_dict() keys are the export keys.
YaRN rope_scaling is implemented only as in inference/model.py (used for the golden checks); Spex models use null.
"""
import math
from types import SimpleNamespace
import torch
import torch.nn as nn
import torch.nn.functional as F


FP8_QAT = [False]   # set by train.py: forward with FP8 fake-quantized weights (straight-through gradients)


def fp8_block_parts(w, block=128):
    """w [O, I] -> (E4M3 values [O, I], scales [ceil(O/128), ceil(I/128)]) as an E4M3 checkpoint with one scale
    per 128x128 block holds them: scale = amax/448 per block (DeepSeek's weight_scale_inv), each w/scale
    rounded to the nearest E4M3 value (3 mantissa bits, normals down to 2^-6, subnormal step 2^-9, ties to even)."""
    O, I = w.shape
    po, pi = -O % block, -I % block
    b = F.pad(w, (0, pi, 0, po)).view((O + po) // block, block, (I + pi) // block, block)
    scale = b.abs().amax(dim=(1, 3), keepdim=True).clamp(min=1e-12) / 448.0
    v = b / scale
    e = torch.floor(torch.log2(v.abs().clamp(min=2.0 ** -9))).clamp(min=-6)
    step = torch.pow(2.0, e - 3)
    q = (torch.round(v / step) * step).clamp(-448, 448)
    return q.reshape(O + po, I + pi)[:O, :I], scale[:, 0, :, 0]


def fp8_block_quantize(w, block=128):
    """The float32 weight an FP8 block-scaled checkpoint gives back: E4M3 values x their block's scale."""
    q, scale = fp8_block_parts(w, block)
    return q * scale.repeat_interleave(block, 0).repeat_interleave(block, 1)[:w.shape[0], :w.shape[1]]


class QLinear(nn.Linear):
    """nn.Linear whose forward sees its FP8-rounded weight while FP8_QAT[0] is on (quantization-aware
    training for the FP8 export); gradients pass straight through to the float32 master weight."""
    def forward(self, x):
        w = self.weight
        if FP8_QAT[0]:
            w = w + (fp8_block_quantize(w.detach()) - w.detach())
        return F.linear(x, w)


def Linear(i, o):
    return QLinear(i, o, bias=False)


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim)); self.eps = eps

    def forward(self, x):
        x = x.float()
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_cos_sin(seqlen, dim, theta, c=None):
    freqs = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))  # theta^(-2i/d)
    rs = getattr(c, "rope_scaling", None)
    if rs and c.max_position_embeddings > rs["original_max_position_embeddings"]:  # YaRN (only for golden checks)
        orig = rs["original_max_position_embeddings"]
        cdim = lambda rot: dim * math.log(orig / (rot * 2 * math.pi)) / (2 * math.log(theta))
        low, high = max(math.floor(cdim(rs["beta_fast"])), 0), min(math.ceil(cdim(rs["beta_slow"])), dim - 1)
        high = high + 0.001 if low == high else high
        smooth = 1 - torch.clamp((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low), 0, 1)
        freqs = freqs / rs["factor"] * (1 - smooth) + freqs * smooth
    ang = torch.outer(torch.arange(seqlen, dtype=torch.float32), freqs)            # [S, d/2]
    return ang.cos(), ang.sin()


def apply_rope(x, cos, sin):
    """x [..., S, H, d]; rotates interleaved pairs (x[2i], x[2i+1]) by angle pos*freq_i."""
    x0, x1 = x[..., 0::2], x[..., 1::2]
    c, s = cos[:, None, :], sin[:, None, :]
    return torch.stack((x0 * c - x1 * s, x0 * s + x1 * c), dim=-1).flatten(-2)


class MLA(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.h, self.nope, self.rope, self.vd = c.num_attention_heads, c.qk_nope_head_dim, c.qk_rope_head_dim, c.v_head_dim
        self.kv_rank, self.q_rank = c.kv_lora_rank, c.q_lora_rank
        qd = self.h * (self.nope + self.rope)
        if self.q_rank:
            self.q_a_proj = Linear(c.hidden_size, self.q_rank)
            self.q_a_layernorm = RMSNorm(self.q_rank, c.rms_norm_eps)
            self.q_b_proj = Linear(self.q_rank, qd)
        else:
            self.q_proj = Linear(c.hidden_size, qd)
        self.kv_a_proj_with_mqa = Linear(c.hidden_size, self.kv_rank + self.rope)
        self.kv_a_layernorm = RMSNorm(self.kv_rank, c.rms_norm_eps)
        self.kv_b_proj = Linear(self.kv_rank, self.h * (self.nope + self.vd))
        self.o_proj = Linear(self.h * self.vd, c.hidden_size)
        self.scale = 1.0 / math.sqrt(self.nope + self.rope)
        rs = getattr(c, "rope_scaling", None)
        if rs and c.max_position_embeddings > rs["original_max_position_embeddings"]:
            self.scale *= (0.1 * rs["mscale"] * math.log(rs["factor"]) + 1.0) ** 2

    def forward(self, x, cos, sin):
        B, S, _ = x.shape
        q = self.q_b_proj(self.q_a_layernorm(self.q_a_proj(x))) if self.q_rank else self.q_proj(x)
        q = q.view(B, S, self.h, self.nope + self.rope)
        q_nope, q_pe = q.split([self.nope, self.rope], dim=-1)
        q_pe = apply_rope(q_pe, cos, sin)
        kv, k_pe = self.kv_a_proj_with_mqa(x).split([self.kv_rank, self.rope], dim=-1)
        k_pe = apply_rope(k_pe.unsqueeze(2), cos, sin)                       # [B,S,1,rope] shared by heads
        kv = self.kv_b_proj(self.kv_a_layernorm(kv)).view(B, S, self.h, self.nope + self.vd)
        k_nope, v = kv.split([self.nope, self.vd], dim=-1)
        q = torch.cat([q_nope, q_pe], -1).transpose(1, 2)                    # [B,H,S,D]
        k = torch.cat([k_nope, k_pe.expand(-1, -1, self.h, -1)], -1).transpose(1, 2)
        att = (q @ k.transpose(-1, -2)) * self.scale
        mask = torch.full((S, S), float("-inf")).triu_(1)
        att = torch.softmax(att.float() + mask, dim=-1)
        o = (att @ v.transpose(1, 2)).transpose(1, 2).reshape(B, S, self.h * self.vd)
        return self.o_proj(o)


class MLP(nn.Module):
    def __init__(self, dim, inter):
        super().__init__()
        self.gate_proj, self.up_proj, self.down_proj = Linear(dim, inter), Linear(dim, inter), Linear(inter, dim)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Gate(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.topk, self.n_groups, self.topk_groups = c.num_experts_per_tok, c.n_group, c.topk_group
        self.route_scale = c.routed_scaling_factor
        self.weight = nn.Parameter(torch.empty(c.n_routed_experts, c.hidden_size))
        self.register_buffer("e_score_correction_bias", torch.zeros(c.n_routed_experts))

    def forward(self, x):                       # x [T, dim]
        scores = F.linear(x.float(), self.weight.float()).sigmoid()
        original_scores = scores
        scores = scores + self.e_score_correction_bias          # bias only affects selection
        if self.n_groups > 1:
            scores = scores.view(x.size(0), self.n_groups, -1)
            group_scores = scores.topk(2, dim=-1)[0].sum(dim=-1)
            gidx = group_scores.topk(self.topk_groups, dim=-1)[1]
            gmask = torch.ones(x.size(0), self.n_groups, dtype=torch.bool).scatter_(1, gidx, False)
            scores = scores.masked_fill(gmask.unsqueeze(-1), float("-inf")).flatten(1)
        indices = scores.topk(self.topk, dim=-1)[1]
        weights = original_scores.gather(1, indices)
        weights = weights / weights.sum(dim=-1, keepdim=True) * self.route_scale
        return weights, indices, original_scores


class MoE(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.n = c.n_routed_experts
        self.gate = Gate(c)
        self.experts = nn.ModuleList([MLP(c.hidden_size, c.moe_intermediate_size) for _ in range(self.n)])
        self.shared_experts = MLP(c.hidden_size, c.moe_intermediate_size * c.n_shared_experts)
        self.load = torch.zeros(self.n)   # tokens routed per expert since last reset (for bias balancing)
        self.aux_loss = None

    def forward(self, x):
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        weights, indices, scores = self.gate(x)
        counts = torch.bincount(indices.flatten(), minlength=self.n)
        self.load += counts.float()
        if self.training and len(shape) == 3:   # sequence-wise aux loss (DeepSeek-V3 eq. 17-20), alpha applied by caller
            B, S = shape[0], shape[1]
            sel = torch.zeros_like(scores).scatter_(1, indices, 1.0).view(B, S, self.n)
            f = sel.sum(1) * self.n / (self.gate.topk * S)                       # [B, n]
            p = (scores / scores.sum(-1, keepdim=True)).view(B, S, self.n).mean(1)
            self.aux_loss = (f.detach() * p).sum(-1).mean()
        y = torch.zeros_like(x, dtype=torch.float32)
        for e in range(self.n):
            if counts[e] == 0: continue
            rows, k = torch.where(indices == e)
            y.index_add_(0, rows, self.experts[e](x.index_select(0, rows)) * weights[rows, k, None])
        return (y + self.shared_experts(x)).view(shape)


class DecoderLayer(nn.Module):
    def __init__(self, c, moe):
        super().__init__()
        self.self_attn = MLA(c)
        self.mlp = MoE(c) if moe else MLP(c.hidden_size, c.intermediate_size)
        self.input_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)

    def forward(self, x, cos, sin):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin)
        return x + self.mlp(self.post_attention_layernorm(x))


class MTPLayer(DecoderLayer):
    def __init__(self, c, embed_tokens, head):
        super().__init__(c, moe=True)
        self.embed_tokens = embed_tokens            # shared with model.embed_tokens
        self.enorm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.hnorm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.eh_proj = Linear(2 * c.hidden_size, c.hidden_size)
        self.shared_head = nn.Module()
        self.shared_head.norm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.shared_head.head = head                # shared with lm_head

    def mtp_forward(self, h, next_tokens, cos, sin):
        x = self.eh_proj(torch.cat([self.enorm(self.embed_tokens(next_tokens)), self.hnorm(h)], dim=-1))
        x = super().forward(x, cos, sin)
        return self.shared_head.head(self.shared_head.norm(x))


class DeepseekV3(nn.Module):
    def __init__(self, config: dict):
        super().__init__()
        c = self.c = SimpleNamespace(**config)
        self.model = nn.Module()
        self.model.embed_tokens = nn.Embedding(c.vocab_size, c.hidden_size)
        self.lm_head = nn.Linear(c.hidden_size, c.vocab_size, bias=False)   # stays BF16 in an FP8 export
        layers = [DecoderLayer(c, moe=i >= c.first_k_dense_replace) for i in range(c.num_hidden_layers)]
        if c.num_nextn_predict_layers:
            layers.append(MTPLayer(c, self.model.embed_tokens, self.lm_head))
        self.model.layers = nn.ModuleList(layers)
        self.model.norm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        for name, p in self.named_parameters():
            if p.dim() == 2: nn.init.normal_(p, std=c.initializer_range)

    def moe_layers(self):
        return [l.mlp for l in self.model.layers if isinstance(l.mlp, MoE)]

    def forward(self, tokens, mtp=True):
        """tokens [B,S] -> (main logits [B,S,V] predicting t+1, MTP logits [B,S-1,V] predicting t+2 or None)."""
        S = tokens.size(1)
        cos, sin = rope_cos_sin(S, self.c.qk_rope_head_dim, self.c.rope_theta, self.c)
        x = self.model.embed_tokens(tokens)
        for layer in self.model.layers[: self.c.num_hidden_layers]:
            x = layer(x, cos, sin)
        h = self.model.norm(x)
        logits = self.lm_head(h)
        mtp_logits = None
        if mtp and self.c.num_nextn_predict_layers and S > 1:
            mtp_logits = self.model.layers[-1].mtp_forward(h[:, :-1], tokens[:, 1:], cos[: S - 1], sin[: S - 1])
        return logits, mtp_logits


def count_params(m: DeepseekV3):
    """(total, active per token) for the main model (excluding MTP), and MTP module size (excluding shared)."""
    c = m.c
    # By identity, not by name: lm_head is tied to the MTP head, and named_parameters()
    # lists a tied parameter once, under whichever name it meets first (the MTP's).
    mtp_ids = {id(p) for p in m.model.layers[-1].parameters()} if c.num_nextn_predict_layers else set()
    shared = {id(m.lm_head.weight), id(m.model.embed_tokens.weight)}
    main = [p for p in m.parameters() if id(p) not in mtp_ids or id(p) in shared]
    total = sum(p.numel() for p in main)
    expert = sum(p.numel() for p in m.moe_layers()[0].experts[0].parameters())
    n_moe = c.num_hidden_layers - c.first_k_dense_replace
    active = total - n_moe * (c.n_routed_experts - c.num_experts_per_tok) * expert
    mtp = sum(p.numel() for p in m.model.layers[-1].parameters()) - sum(p.numel() for p in m.lm_head.parameters()) \
        - m.model.embed_tokens.weight.numel() if c.num_nextn_predict_layers else 0
    return total, active, mtp
