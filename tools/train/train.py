#!/usr/bin/python3
"""Train a small DeepSeek-V3 (MLA + sigmoid/noaux_tc MoE + 1 MTP module) on CPU.

  /usr/bin/python3 tools/train/train.py --run tools/train/runs/austen-moe --data tools/train/runs/data \
      --preset small --steps 1500 --minutes 58 --batch 12 --ctx 256
Cosine LR (10% floor) over progress = max(step/steps, elapsed/minutes), so the run always ends in budget.
Writes RUN/train.log, RUN/ckpt.pt (every --ckpt-min minutes and at the end), RUN/config.json.
Loss = CE(main) + lambda*CE(MTP) (lambda 0.3 for the first 70% of progress, then 0.1) + 1e-4 * sequence-wise aux loss.
Aux-loss-free balancing: after each optimizer step, bias_e += gamma * sign(mean_load - load_e) per MoE layer.
"""
import argparse, json, math, os, sys, time
import numpy as np
import torch
import torch.nn.functional as F
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model as M
import grow as G
from bpe import Tokenizer

BASE = dict(architectures=["DeepseekV3ForCausalLM"], model_type="deepseek_v3", attention_bias=False, attention_dropout=0.0,
            bos_token_id=0, eos_token_id=1, ep_size=1, hidden_act="silu", initializer_range=0.02, moe_layer_freq=1,
            n_shared_experts=1, norm_topk_prob=True, num_nextn_predict_layers=1, pretraining_tp=1, rms_norm_eps=1e-6,
            rope_scaling=None, rope_theta=10000.0, routed_scaling_factor=2.5, scoring_func="sigmoid", seq_aux=True,
            tie_word_embeddings=False, topk_method="noaux_tc", torch_dtype="bfloat16", use_cache=True, vocab_size=4096)
PRESETS = {
    "tiny": dict(hidden_size=64, intermediate_size=128, moe_intermediate_size=32, num_hidden_layers=2, first_k_dense_replace=1,
                 num_attention_heads=2, num_key_value_heads=2, q_lora_rank=32, kv_lora_rank=32, qk_nope_head_dim=16,
                 qk_rope_head_dim=8, v_head_dim=16, n_routed_experts=8, n_group=4, topk_group=2, num_experts_per_tok=2),
    "small": dict(hidden_size=256, intermediate_size=512, moe_intermediate_size=128, num_hidden_layers=4, first_k_dense_replace=1,
                  num_attention_heads=8, num_key_value_heads=8, q_lora_rank=128, kv_lora_rank=64, qk_nope_head_dim=32,
                  qk_rope_head_dim=16, v_head_dim=32, n_routed_experts=16, n_group=4, topk_group=2, num_experts_per_tok=4),
    # DeepSeek-V3 in proportion (issue 13): many thin layers, so the MTP module (eh_proj + one layer + the
    # head) is a small share of a main step; 8 experts top-2 + 1 shared per MoE layer; ~38 MB in BF16.
    "deep": dict(hidden_size=256, intermediate_size=512, moe_intermediate_size=128, num_hidden_layers=15, first_k_dense_replace=1,
                 num_attention_heads=8, num_key_value_heads=8, q_lora_rank=128, kv_lora_rank=64, qk_nope_head_dim=32,
                 qk_rope_head_dim=16, v_head_dim=32, n_routed_experts=8, n_group=4, topk_group=2, num_experts_per_tok=2),
}


def load_tokens(data_dir, split):
    cache = f"{data_dir}/{split}.ids.npy"
    if not os.path.exists(cache):
        tok = Tokenizer.load(f"{data_dir}/tokenizer.json")
        np.save(cache, np.array(tok.encode(open(f"{data_dir}/{split}.txt", encoding="utf-8").read(), bos=True), dtype=np.int16))
    return torch.from_numpy(np.load(cache).astype(np.int64))


def losses(m, x, aux_alpha=0.0, distill=0.0):
    """(main CE, MTP loss, aux loss, MTP top-1 agreement with the main model's next row).
    MTP loss = (1 - distill) * CE(token i+2) + distill * CE(softmax(main logits row i+1), detached):
    speculation accepts a draft when it matches the main model, not the corpus, so the MTP module
    is taught to imitate the main model (self-distillation, as in EAGLE/Medusa-2)."""
    logits, mtp = m(x)
    V = logits.size(-1)
    main = F.cross_entropy(logits[:, :-1].reshape(-1, V), x[:, 1:].reshape(-1))
    mtp_rows = mtp[:, :-1].reshape(-1, V)
    mtp_l = F.cross_entropy(mtp_rows, x[:, 2:].reshape(-1))
    target = logits[:, 1:-1].detach().reshape(-1, V)
    if distill:
        soft = -(F.softmax(target, -1) * F.log_softmax(mtp_rows, -1)).sum(-1).mean()
        mtp_l = (1 - distill) * mtp_l + distill * soft
    agree = (mtp_rows.argmax(-1) == target.argmax(-1)).float().mean()
    aux = sum(l.aux_loss for l in m.moe_layers()) if aux_alpha else torch.zeros(())
    return main, mtp_l, aux, agree


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", required=True); ap.add_argument("--data", required=True)
    ap.add_argument("--preset", default="small", choices=PRESETS)
    ap.add_argument("--steps", type=int, default=600); ap.add_argument("--batch", type=int, default=12)
    ap.add_argument("--ctx", type=int, default=256); ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=30); ap.add_argument("--wd", type=float, default=0.1)
    ap.add_argument("--gamma", type=float, default=1e-3, help="bias update speed")
    ap.add_argument("--aux-alpha", type=float, default=1e-4); ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--ckpt-min", type=float, default=4.0); ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--minutes", type=float, default=1e9, help="wall-time budget: LR schedule progress = max(step/steps, time/budget)")
    ap.add_argument("--threads", type=int, default=2); ap.add_argument("--resume", action="store_true")
    ap.add_argument("--distill", type=float, default=0.0, help="MTP loss share taken from the main model's distribution")
    ap.add_argument("--ctx-final", type=int, default=0, help="context extension: train at this length once progress >= --final-at")
    ap.add_argument("--final-at", type=float, default=0.8)
    ap.add_argument("--ctx-alt", type=int, default=0, help="every other step trains on windows of this length (same tokens per step)")
    ap.add_argument("--alt-every", type=int, default=2, help="with --ctx-alt: one step in this many is long")
    ap.add_argument("--init-from", default="", help="exported model dir to grow from (depth up-scaling, see grow.py)")
    ap.add_argument("--grow", type=int, default=1, help="with --init-from: each layer becomes this many (copies with zeroed outputs)")
    ap.add_argument("--old-lr-mult", type=float, default=1.0, help="with --init-from: LR multiplier for the grown-from layers")
    ap.add_argument("--mtp-only-at", type=float, default=2.0, help="from this progress on, freeze the main model and train only MTP")
    ap.add_argument("--fp8-qat-at", type=float, default=2.0, help="from this progress on, forward with FP8 (128x128 block) fake-quantized weights")
    a = ap.parse_args()
    torch.manual_seed(a.seed); np.random.seed(a.seed); torch.set_num_threads(a.threads)
    os.makedirs(a.run, exist_ok=True)
    ck = torch.load(f"{a.run}/ckpt.pt") if a.resume and os.path.exists(f"{a.run}/ckpt.pt") else None
    cfg = dict(BASE, **PRESETS[a.preset], max_position_embeddings=max(a.ctx, a.ctx_final, a.ctx_alt))
    if ck:   # the run's own shape: --init-from may since have been overwritten by this run's export
        cfg = ck["config"]
    elif a.init_from:
        cfg = G.grown_config(cfg, f"{a.init_from}/config.json", a.grow)
    json.dump(cfg, open(f"{a.run}/config.json", "w"), indent=2)
    train, val = load_tokens(a.data, "train"), load_tokens(a.data, "val")
    m = M.DeepseekV3(cfg)
    old = G.grow_into(m, f"{a.init_from}/model.safetensors", a.grow) if a.init_from and not a.resume else set()
    if a.init_from and a.resume:
        old = G.grown_from_names(m, a.grow)
    total, active, mtp_p = M.count_params(m)
    groups = {}
    for n, p in m.named_parameters():   # (decay?, old layer?) -> params
        groups.setdefault((p.dim() >= 2, n in old), []).append(p)
    opt = torch.optim.AdamW([{"params": ps, "weight_decay": a.wd if d else 0.0, "mult": a.old_lr_mult if o else 1.0}
                             for (d, o), ps in sorted(groups.items())], lr=a.lr, betas=(0.9, 0.95))
    mtp_params = {id(p) for p in m.model.layers[-1].parameters()} - {id(m.lm_head.weight), id(m.model.embed_tokens.weight)}
    step, elapsed0 = 0, 0.0
    if ck:
        m.load_state_dict(ck["model"]); opt.load_state_dict(ck["opt"]); step, elapsed0 = ck["step"], ck["elapsed"]
        torch.set_rng_state(ck["rng"])
        del ck
    log = open(f"{a.run}/train.log", "a")
    def say(s):
        print(s, flush=True); log.write(s + "\n"); log.flush()
    say(f"# {time.strftime('%F %T')} args {vars(a)}")
    say(f"# params main total {total:,} active/token {active:,}; MTP module extra {mtp_p:,}; train {len(train):,} tok, val {len(val):,} tok")
    val_x = torch.stack([val[i * a.ctx:(i + 1) * a.ctx] for i in range(min(16, len(val) // a.ctx))])

    def save(tag=""):
        ck = {"model": m.state_dict(), "opt": opt.state_dict(), "step": step, "elapsed": elapsed0 + time.time() - t0,
              "config": cfg, "rng": torch.get_rng_state(), "args": vars(a)}
        torch.save(ck, f"{a.run}/ckpt.tmp"); os.replace(f"{a.run}/ckpt.tmp", f"{a.run}/ckpt.pt")
        say(f"# checkpoint step {step} {tag}")

    t0 = last_ck = time.time(); step0 = step
    moes = m.moe_layers()
    progress = lambda: max(step / a.steps, (elapsed0 + time.time() - t0) / (a.minutes * 60))
    while progress() < 1.0:
        p = progress()
        lr = a.lr * (step + 1) / a.warmup if step < a.warmup else a.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))
        mtp_only = p >= a.mtp_only_at
        if mtp_only:   # the MTP module alone, on its own linear decay from lr/2 to lr/20
            lr = a.lr * (0.5 - 0.45 * (p - a.mtp_only_at) / (1 - a.mtp_only_at))
        for g in opt.param_groups: g["lr"] = lr * (1.0 if mtp_only else g.get("mult", 1.0))
        lam = 0.3 if p < 0.7 else 0.1
        ctx, batch = a.ctx, a.batch
        if (a.ctx_final and p >= a.final_at) or (a.ctx_alt and step % a.alt_every == a.alt_every - 1):   # same tokens per step, longer windows
            long = a.ctx_final or a.ctx_alt
            ctx, batch = long, max(1, a.batch * a.ctx // long)
        for q in m.parameters():
            q.requires_grad_(not mtp_only or id(q) in mtp_params)
        M.FP8_QAT[0] = p >= a.fp8_qat_at
        idx = torch.randint(0, len(train) - ctx, (batch,))
        x = torch.stack([train[i:i + ctx] for i in idx])
        m.train()
        for l in moes: l.load.zero_()
        main_l, mtp_l, aux, agree = losses(m, x, a.aux_alpha, 1.0 if mtp_only else a.distill)
        loss = (mtp_l if mtp_only else main_l + lam * mtp_l + a.aux_alpha * aux)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_([q for q in m.parameters() if q.grad is not None], 1.0)
        opt.step()
        with torch.no_grad():   # auxiliary-loss-free load balancing
            for l in (moes[-1:] if mtp_only else moes):
                l.gate.e_score_correction_bias += a.gamma * torch.sign(l.load.mean() - l.load)
        step += 1
        if step % 10 == 0 or step == 1:
            el = elapsed0 + time.time() - t0
            imb = max((l.load.max() / l.load.mean()).item() for l in moes)
            eta = min((time.time() - t0) / (step - step0) * (a.steps - step), a.minutes * 60 - el)
            say(f"step {step:5d} ctx {ctx} lr {lr:.2e} loss {main_l.item():.4f} mtp {mtp_l.item():.4f} agree {agree.item():.3f} aux {aux.item():.4f} "
                f"gn {gn:.2f} maxload/mean {imb:.2f} elapsed {el / 60:.1f}m eta {eta / 60:.1f}m")
        done = progress() >= 1.0
        if step % a.eval_every == 0 or done:
            m.eval()
            with torch.no_grad():
                vm, vt, _, va = losses(m, val_x)
            say(f"eval step {step} val_loss {vm.item():.4f} ppl {math.exp(vm.item()):.2f} mtp_val_loss {vt.item():.4f} mtp_agree {va.item():.3f}")
        if time.time() - last_ck > a.ckpt_min * 60 or done:
            save("final" if done else ""); last_ck = time.time()
    say(f"# done: {step} steps, {(elapsed0 + time.time() - t0) / 60:.1f} min")


if __name__ == "__main__":
    main()
