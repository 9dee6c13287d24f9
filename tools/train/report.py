#!/usr/bin/python3
"""Evaluate an exported model and write its model card (DIR/README.md) + DIR/../report json.

  /usr/bin/python3 tools/train/report.py --model models/austen-moe --run tools/train/runs/austen-moe \
      --val tools/train/runs/data/val.txt --ctx 256
"""
import argparse, json, os, re, sys
import torch
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model as M
from eval import load, perplexity, generate

PROMPTS = ["It is a truth universally acknowledged, that", "Elizabeth looked at Mr. Darcy and",
           "\"My dear Emma,\" said Mr. Knightley,"]

if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True); ap.add_argument("--run", required=True)
    ap.add_argument("--val", required=True); ap.add_argument("--ctx", type=int, default=256)
    ap.add_argument("--ctx-long", type=int, default=0, help="also the main perplexity at this window length")
    a = ap.parse_args()
    torch.set_num_threads(2)
    m, tok = load(a.model)
    c = m.c
    total, active, mtp_extra = M.count_params(m)
    ids = tok.encode(open(a.val, encoding="utf-8").read(), bos=True)
    r = perplexity(m, ids, a.ctx)
    rl = perplexity(m, ids, a.ctx_long) if a.ctx_long else None   # with the bias, as served
    biases = [l.gate.e_score_correction_bias.clone() for l in m.moe_layers()]
    for l in m.moe_layers(): l.gate.e_score_correction_bias.zero_()
    r0 = perplexity(m, ids, a.ctx)
    for l, b in zip(m.moe_layers(), biases): l.gate.e_score_correction_bias.copy_(b)
    samples = [(p, generate(m, tok, p, 60, a.ctx), generate(m, tok, p, 60, a.ctx, top_p=0.9, temp=0.8, seed=i))
               for i, p in enumerate(PROMPTS)]
    log = open(f"{a.run}/train.log").read()
    evals = re.findall(r"eval step (\d+) val_loss ([\d.]+) ppl ([\d.]+) mtp_val_loss ([\d.]+)", log)
    steps = re.findall(r"step\s+(\d+)(?: ctx \d+)? lr \S+ loss ([\d.]+) mtp ([\d.]+)", log)
    done = re.findall(r"# done: (\d+) steps, ([\d.]+) min", log)
    all_args = re.findall(r"args (\{.*\})", log)
    args = all_args[0]   # the recipe; later lines are resumes, possibly with a new budget (below)
    gamma = re.search(r"'gamma': ([0-9.e+-]+)", args).group(1)
    resumed = f" (stopped and resumed from its checkpoint {len(all_args) - 1}x)" if len(all_args) > 1 else ""
    continued = []   # resumes that changed the schedule: an MTP-only continuation
    for chunk in log.split("args {")[2:]:
        R, before = eval("{" + chunk.split("\n", 1)[0]), log.split("args {" + chunk.split("\n", 1)[0])[0]
        at = re.findall(r"# checkpoint step (\d+)", before)
        if R.get("mtp_only_at") != eval(args).get("mtp_only_at") and at:
            continued.append((at[-1], R))
    if continued:   # one sentence for the whole continuation: where it began, how it was last resumed
        (s0, _), (_, R) = continued[0], continued[-1]
        continued = [f"continued from step {s0} (`--resume`, last with `--minutes {R['minutes']:g} --mtp-only-at "
                     f"{R['mtp_only_at']:g}`): the main model frozen (its weights unchanged), only the MTP module "
                     f"trained on distillation, its learning rate decaying linearly to lr/20"]
    last = steps[-5:]
    tr_main = sum(float(s[1]) for s in last) / len(last); tr_mtp = sum(float(s[2]) for s in last) / len(last)
    n_steps, minutes = done[-1] if done else (steps[-1][0], "?")
    size = os.path.getsize(f"{a.model}/model.safetensors") / 1e6
    name = os.path.basename(os.path.normpath(a.model))
    cfg_json = json.load(open(f"{a.model}/config.json"))
    fp8 = "quantization_config" in cfg_json
    A = eval(args)   # the train.py args dict as logged
    origin = "trained from scratch"
    if A.get("init_from"):
        origin = (f"grown from a {c.num_hidden_layers // A['grow']}-layer model of the same width ({A['init_from']}, trained from scratch "
                  f"with `tools/train/`) by depth up-scaling (`tools/train/grow.py`: each layer followed by {A['grow'] - 1} copies whose "
                  f"output projections start at zero, so training starts from the smaller model's function), then trained further")
    weights = ("FP8 E4M3 weights with one F32 `weight_scale_inv` per 128x128 block for every linear layer but the output head "
               "(as DeepSeek-V3 ships; trained quantization-aware for the last "
               f"{100 * (1 - A.get('fp8_qat_at', 1)):.0f}% of the schedule), BF16 embedding, head, norms and router"
               if fp8 else "BF16 weights")
    extra = []
    if A.get("ctx_alt"): extra.append(f"one step in {A.get('alt_every', 2)} on {A['ctx_alt']}-token windows (same tokens per step)")
    if A.get("distill"): extra.append(f"MTP loss {100 * A['distill']:.0f}% distillation from the main model's own next-row distribution")
    if A.get("mtp_only_at", 2) < 1: extra.append(f"from {100 * A['mtp_only_at']:.0f}% of the schedule on, the main model frozen and only the MTP module trained (pure distillation)")
    if A.get("old_lr_mult", 1) != 1: extra.append(f"the grown-from layers at {A['old_lr_mult']}x the learning rate")
    extra += continued[-1:]
    extra = "".join(f"\n- {e[0].upper() + e[1:]}." for e in extra)
    long_row = f"\n| main model, ctx {a.ctx_long} | {rl['nll']:.4f} | {rl['ppl']:.3f} |" if rl else ""
    mtp_tag = lambda layer: " (MTP)" if layer == c.num_hidden_layers else ""
    loadrows = "\n".join(f"| {c.first_k_dense_replace + i}{mtp_tag(c.first_k_dense_replace + i)} | {r['expert_load_max_over_mean'][i]:.2f} | {r0['expert_load_max_over_mean'][i]:.2f} | {min(r['expert_load'][i])} – {max(r['expert_load'][i])} |"
                         for i in range(len(r["expert_load"])))
    samp = "\n\n".join(f"**Prompt:** `{p}`\n\n- greedy: {g[len(p):]!r}\n- top-p 0.9, T 0.8: {s[len(p):]!r}" for p, g, s in samples)
    card = f"""# {name}

A small **DeepSeek-V3-architecture** MoE language model {origin}, on Jane Austen's six novels,
for testing the Spex inference engine. Hugging Face layout (`DeepseekV3ForCausalLM`), {weights}
(`e_score_correction_bias` F32), `rope_scaling: null`.

## Architecture
- hidden {c.hidden_size}, {c.num_hidden_layers} layers ({c.first_k_dense_replace} dense SwiGLU with intermediate {c.intermediate_size}, then MoE), vocab {c.vocab_size}, context {c.max_position_embeddings}
- MLA: {c.num_attention_heads} heads, q_lora_rank {c.q_lora_rank}, kv_lora_rank {c.kv_lora_rank}, qk_nope {c.qk_nope_head_dim}, qk_rope {c.qk_rope_head_dim} (interleaved RoPE, theta {c.rope_theta}), v_head {c.v_head_dim}
- MoE: {c.n_routed_experts} routed experts (intermediate {c.moe_intermediate_size}) in {c.n_group} groups, top-{c.topk_group} groups, top-{c.num_experts_per_tok} experts,
  sigmoid scores, noaux_tc with `e_score_correction_bias`, norm_topk_prob, routed_scaling_factor {c.routed_scaling_factor}, {c.n_shared_experts} shared expert
- 1 MTP module (`model.layers.{c.num_hidden_layers}`): eh_proj(concat(enorm(embed(t[i+1])), hnorm(h[i]))), h = hidden after `model.norm`; its
  `embed_tokens` / `shared_head.head` are copies of `model.embed_tokens` / `lm_head` (shared during training)
- Parameters: main model **{total:,}** total, **{active:,}** active per token; MTP module +{mtp_extra:,} (excluding the shared embedding/head).
  model.safetensors {size:.1f} MB.

## Training
- Data: `/work/shared/data/austen.txt` (Austen's six novels, 4.0 MB); last 5% by bytes (cut at a line boundary) held out for validation.
- Tokenizer: byte-level BPE trained on the training split (`tools/train/bpe.py`), 4096 ids incl. BOS (0) / EOS (1), DeepSeek-V3 pre-tokenizer regexes.
- PyTorch 1.13 CPU, 2 threads, {n_steps} steps in {minutes} min of training{resumed}, AdamW (betas 0.9/0.95, wd 0.1), cosine LR with warmup; args: `{args}`
- Loss = CE + λ·CE_MTP (λ 0.3 for the first 70% of the schedule, then 0.1) + 1e-4 × DeepSeek's sequence-wise balance loss.
  Auxiliary-loss-free balancing: after each step, bias_e += {gamma}·sign(mean load − load_e) per MoE layer.{extra}
- Final training loss (mean of last 5 logged steps): main {tr_main:.3f}, MTP {tr_mtp:.3f}.

## Evaluation (validation split, {r['tokens_scored']:,} scored tokens, ctx {a.ctx}, float32 from the exported {"FP8" if fp8 else "BF16"} weights)
Definition: ids = [BOS] + encode(file), non-overlapping windows of {a.ctx} tokens, each window scored independently,
first token of each window is context only (see `tools/train/README.md`).

| | loss (nats) | perplexity |
|---|---|---|
| main model | {r['nll']:.4f} | {r['ppl']:.3f} |
| MTP head (token i+2) | {r['mtp_nll']:.4f} | {r['mtp_ppl']:.3f} |
| main, bias zeroed | {r0['nll']:.4f} | {r0['ppl']:.3f} |{long_row}

MTP top-1 agreement with the main model's next-next token (argmax MTP row i == argmax main row i+1): **{100 * r['mtp_agree']:.1f}%**.

Expert load on the validation text (tokens per expert, max/mean; mean = tokens·top-k/experts):

| layer | max/mean with bias | max/mean bias zeroed | min – max tokens (with bias) |
|---|---|---|---|
{loadrows}

## Samples (prompt, then 60 generated tokens)

{samp}

## Reproduce
See `tools/train/README.md`.
"""
    open(f"{a.model}/README.md", "w").write(card)
    json.dump({"with_bias": r, "bias_zeroed": r0, "params_total": total, "params_active": active, "mtp_extra": mtp_extra,
               "samples": samples}, open(f"{a.run}/report.json", "w"), indent=1)
    print(card)
