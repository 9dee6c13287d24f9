#!/usr/bin/python3
"""Export a training checkpoint to Hugging Face layout (DeepSeek-V3 tensor names).

  /usr/bin/python3 tools/train/export.py --ckpt tools/train/runs/austen-moe/ckpt.pt \
      --tokenizer tools/train/runs/data --out models/austen-moe
Weights are BF16 except mlp.gate.e_score_correction_bias (F32). The MTP layer's embed_tokens and
shared_head.head are shared with model.embed_tokens / lm_head in training; they are left out (Spex and
eval.py then use the main model's, 2 x V x H x 2 bytes saved) unless --mtp-copies writes them as
DeepSeek's release does.
config.json has exactly the keys of tests/data/golden/tiny-f32/config.json. The model card (README.md) is
written afterwards by report.py.
"""
import argparse, json, os, shutil, sys
import torch
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sfile
from model import fp8_block_parts

NOT_FP8 = ("embed_tokens.weight", "lm_head.weight", "shared_head.head.weight", "mlp.gate.weight")


GOLDEN_KEYS = ['architectures', 'model_type', 'attention_bias', 'attention_dropout', 'bos_token_id', 'eos_token_id', 'ep_size',
               'first_k_dense_replace', 'hidden_act', 'hidden_size', 'initializer_range', 'intermediate_size', 'kv_lora_rank',
               'max_position_embeddings', 'moe_intermediate_size', 'moe_layer_freq', 'n_group', 'n_routed_experts',
               'n_shared_experts', 'norm_topk_prob', 'num_attention_heads', 'num_experts_per_tok', 'num_hidden_layers',
               'num_key_value_heads', 'num_nextn_predict_layers', 'pretraining_tp', 'q_lora_rank', 'qk_nope_head_dim',
               'qk_rope_head_dim', 'rms_norm_eps', 'rope_scaling', 'rope_theta', 'routed_scaling_factor', 'scoring_func',
               'seq_aux', 'tie_word_embeddings', 'topk_group', 'topk_method', 'torch_dtype', 'use_cache', 'v_head_dim', 'vocab_size']

if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", required=True); ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--mtp-copies", action="store_true", help="also write the MTP layer's embed_tokens / shared_head.head")
    ap.add_argument("--fp8", action="store_true",
                    help="every linear weight but lm_head as F8_E4M3 with 128x128 F32 weight_scale_inv blocks, as DeepSeek ships")
    a = ap.parse_args()
    ck = torch.load(a.ckpt)
    cfg = ck["config"]
    assert set(cfg) == set(GOLDEN_KEYS), set(cfg) ^ set(GOLDEN_KEYS)
    os.makedirs(a.out, exist_ok=True)
    out_cfg = {k: cfg[k] for k in GOLDEN_KEYS}
    if a.fp8:
        out_cfg["quantization_config"] = {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                                          "weight_block_size": [128, 128]}
    json.dump(out_cfg, open(f"{a.out}/config.json", "w"), indent=2)
    sd = {k: v.clone() for k, v in ck["model"].items()
          if a.mtp_copies or not (k.startswith("model.layers.") and k.endswith(("embed_tokens.weight", "shared_head.head.weight")))}
    dt = {k: "F32" if k.endswith("e_score_correction_bias") else "BF16" for k in sd}
    if a.fp8:   # the linears model.QLinear fake-quantizes in training (--fp8-qat-at)
        for k in [k for k in sd if sd[k].dim() == 2 and not k.endswith(NOT_FP8)]:
            q, scale = fp8_block_parts(sd[k].float())
            sd[k], sd[k + "_scale_inv"] = q, scale
            dt[k], dt[k + "_scale_inv"] = "F8_E4M3", "F32"
    sfile.save(f"{a.out}/model.safetensors", sd, dt)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(f"{a.tokenizer}/{f}", f"{a.out}/{f}")
    size = sum(os.path.getsize(f"{a.out}/{f}") for f in os.listdir(a.out))
    print(f"exported step {ck['step']} ({len(sd)} tensors) to {a.out}: {size / 1e6:.1f} MB")
