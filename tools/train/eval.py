#!/usr/bin/python3
"""Evaluate an EXPORTED checkpoint (HF dir, BF16 weights -> float32), all compute in float32.

Perplexity definition (the C engine's `spex perplexity --model DIR --file F --ctx N` must match):
  1. ids = [BOS=0] + encode(whole file)   (file read as UTF-8, tokenized as one string, no EOS).
  2. Split ids into consecutive non-overlapping windows of N tokens: ids[0:N], ids[N:2N], ...; the last
     window may be shorter and is used if it has >= 2 tokens.
  3. Each window is run independently from an empty cache (positions 0..len-1, causal attention).
  4. In every window, logits at position j score token j+1 for j = 0..len-2 (the first token of each
     window is context only and never scored).
  5. NLL = mean over all scored tokens of -log softmax(logits)[target] (natural log); PPL = exp(NLL).
  MTP head (same windows): MTP row j (h_j after model.norm, embed of token j+1) scores token j+2,
  j = 0..len-3. MTP agreement = fraction of those j where argmax(MTP row j) == argmax(main logits j+1).

  /usr/bin/python3 tools/train/eval.py --model models/austen-moe --file tools/train/runs/data/val.txt --ctx 256 [--no-bias] [--report r.json]
  /usr/bin/python3 tools/train/eval.py --model models/austen-moe --logits --tokens 1,2,3
  /usr/bin/python3 tools/train/eval.py --model models/austen-moe --prompt "It is a truth" --gen 60 [--top-p 0.9 --temp 0.8]
"""
import argparse, json, math, os, sys
import torch
import torch.nn.functional as F
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model as M, sfile
from bpe import Tokenizer


def with_shared(sd):
    """The MTP layer's embed_tokens / shared_head.head are the main model's when the file leaves them out."""
    for k in list(sd):
        if k.startswith("model.layers.") and k.endswith(".eh_proj.weight"):
            p = k[: -len("eh_proj.weight")]
            sd.setdefault(p + "embed_tokens.weight", sd["model.embed_tokens.weight"])
            sd.setdefault(p + "shared_head.head.weight", sd["lm_head.weight"])
    return sd


def load(d):
    m = M.DeepseekV3(json.load(open(f"{d}/config.json"))).eval()
    m.load_state_dict(with_shared(sfile.load(f"{d}/model.safetensors")))
    return m, Tokenizer.load(f"{d}/tokenizer.json")


@torch.no_grad()
def perplexity(m, ids, ctx, bs=8):
    wins = [ids[i:i + ctx] for i in range(0, len(ids), ctx)]
    wins = [w for w in wins if len(w) >= 2]
    for l in m.moe_layers(): l.load.zero_()
    nll = mnll = agree = n = mn = 0.0
    groups = [wins[i:i + bs] for i in range(0, len(wins), bs)]
    for g in groups:
        for L in sorted(set(len(w) for w in g)):
            x = torch.tensor([w for w in g if len(w) == L])
            logits, mtp = m(x)
            nll += F.cross_entropy(logits[:, :-1].flatten(0, 1), x[:, 1:].flatten(), reduction="sum").item()
            n += x.size(0) * (L - 1)
            if L >= 3:
                mnll += F.cross_entropy(mtp[:, :-1].flatten(0, 1), x[:, 2:].flatten(), reduction="sum").item()
                agree += (mtp[:, :-1].argmax(-1) == logits[:, 1:-1].argmax(-1)).sum().item()
                mn += x.size(0) * (L - 2)
    loads = [(l.load.max() / l.load.mean()).item() for l in m.moe_layers()]
    return dict(tokens_scored=int(n), nll=nll / n, ppl=math.exp(nll / n), mtp_nll=mnll / mn, mtp_ppl=math.exp(mnll / mn),
                mtp_agree=agree / mn, expert_load_max_over_mean=[round(x, 3) for x in loads],
                expert_load=[l.load.long().tolist() for l in m.moe_layers()])


@torch.no_grad()
def generate(m, tok, prompt, n, ctx, top_p=0.0, temp=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = tok.encode(prompt, bos=True)
    for _ in range(n):
        logits = m(torch.tensor([ids[-ctx:]]), mtp=False)[0][0, -1]
        if top_p <= 0:
            nxt = int(logits.argmax())
        else:
            p = torch.softmax(logits / temp, -1)
            sp, si = p.sort(descending=True)
            keep = (sp.cumsum(0) - sp) < top_p
            nxt = int(si[keep][torch.multinomial(sp[keep] / sp[keep].sum(), 1, generator=g)])
        if nxt == 1: break
        ids.append(nxt)
    return tok.decode(ids)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True); ap.add_argument("--file"); ap.add_argument("--ctx", type=int, default=256)
    ap.add_argument("--no-bias", action="store_true", help="zero e_score_correction_bias (routing without balancing bias)")
    ap.add_argument("--report"); ap.add_argument("--logits", action="store_true"); ap.add_argument("--tokens")
    ap.add_argument("--prompt"); ap.add_argument("--gen", type=int, default=60)
    ap.add_argument("--top-p", type=float, default=0.0); ap.add_argument("--temp", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(2)
    m, tok = load(a.model)
    if a.no_bias:
        for l in m.moe_layers(): l.gate.e_score_correction_bias.zero_()
    if a.logits:
        with torch.no_grad():
            lg = m(torch.tensor([[int(t) for t in a.tokens.split(",")]]), mtp=False)[0][0]
        print(json.dumps(lg.tolist()))
    if a.file:
        r = perplexity(m, tok.encode(open(a.file, encoding="utf-8").read(), bos=True), a.ctx)
        r.update(file=a.file, ctx=a.ctx, bias_zeroed=a.no_bias)
        print(json.dumps({k: v for k, v in r.items() if k != "expert_load"}))
        if a.report: json.dump(r, open(a.report, "w"), indent=1)
    if a.prompt:
        print(generate(m, tok, a.prompt, a.gen, a.ctx, a.top_p, a.temp, a.seed))
