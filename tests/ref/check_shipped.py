#!/usr/bin/python3
"""Cross-check the C engine against the PyTorch implementation it was trained with, on the shipped model.

Both compute in float32 from the exported BF16 weights:
  - perplexity of a validation slice (tools/train/eval.py's definition, which coordinator/decode/perplexity.h
    shares) must agree within 1e-3 relative (typically ~1e-6);
  - greedy continuations of a few prompts must agree token for token (first 24 tokens);
  - the C engine's greedy output with --spec-k 1..4 must equal --spec-k 0;
  - under `mpirun -np 3` (2 expert workers, lossless codec) greedy output of every prompt, batched
    together by `spex batch`, with --spec-k 0..4 equals the single-process output (skipped, and
    said so, only if mpirun is not installed);
  - dynamic routing bias (--bias-update-rate) updates, keeps perplexity within 2%, and is refused
    together with --combine expert.
Usage: check_shipped.py SPEX_BINARY MODEL_DIR VALIDATION_TEXT
"""
import json, os, shutil, subprocess, sys, tempfile

spex, model_dir, val = sys.argv[1:4]
repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(repo, "tools", "train"))
import torch  # noqa: E402
import eval as ref  # noqa: E402

torch.set_num_threads(1)
m, tok = ref.load(model_dir)
fails = []


def spex_json(*args):
    out = subprocess.run([spex, *args], check=True, capture_output=True, text=True).stdout
    return json.loads(out)


# 1. perplexity
text = open(val, encoding="utf-8").read()
ids = tok.encode(text, bos=True)
r = ref.perplexity(m, ids, 128)
c = spex_json("perplexity", "--model", model_dir, "--file", val, "--ctx", "128", "--json", "--mtp")
rel = abs(c["perplexity"] - r["ppl"]) / r["ppl"]
print(f"perplexity: spex {c['perplexity']:.6f}  pytorch {r['ppl']:.6f}  rel diff {rel:.2e}  "
      f"({c['predicted']} tokens scored, pytorch {r['tokens_scored']})")
if rel > 1e-3 or c["predicted"] != r["tokens_scored"]:
    fails.append("perplexity differs")
# the MTP module's perplexity (token t+2) and its top-1 agreement with the main model's next row;
# an argmax may flip on a near tie between the two float32 implementations: 1 row of slack
mrel = abs(c["mtp"]["perplexity"] - r["mtp_ppl"]) / r["mtp_ppl"]
n_mtp = c["mtp"]["predicted"]
agree_rows = abs(c["mtp"]["agreement"] - r["mtp_agree"]) * n_mtp
print(f"MTP perplexity: spex {c['mtp']['perplexity']:.6f}  pytorch {r['mtp_ppl']:.6f}  rel diff {mrel:.2e}; "
      f"agreement spex {c['mtp']['agreement']:.4f} pytorch {r['mtp_agree']:.4f} ({n_mtp} rows)")
if mrel > 1e-3 or agree_rows > 1.01 or not 0.3 < c["mtp"]["agreement"] < 1:
    fails.append("MTP perplexity or agreement differs")

# 1b. the same at the model's full context: positions 128..1023 (RoPE, the latent cache, attention over
#     long rows) are checked only here. The slice twice over gives one 1024-token window and a remainder.
if m.c.max_position_embeddings >= 1024:
    with tempfile.TemporaryDirectory() as tmp:
        long_file = os.path.join(tmp, "val2x.txt")
        open(long_file, "w", encoding="utf-8").write(text + text)
        rl = ref.perplexity(m, tok.encode(text + text, bos=True), 1024)
        cl = spex_json("perplexity", "--model", model_dir, "--file", long_file, "--ctx", "1024", "--json")
    rel = abs(cl["perplexity"] - rl["ppl"]) / rl["ppl"]
    print(f"perplexity, ctx 1024: spex {cl['perplexity']:.6f}  pytorch {rl['ppl']:.6f}  rel diff {rel:.2e}  "
          f"({cl['predicted']} tokens scored, pytorch {rl['tokens_scored']})")
    if rel > 1e-3 or cl["predicted"] != rl["tokens_scored"] or rl["tokens_scored"] <= 1024:
        fails.append("perplexity at ctx 1024 differs")

# 2. greedy continuations, and 3. speculation keeps them
prompts = ["It is a truth universally acknowledged", "Mr. Darcy", "She was not", "\"I cannot"]
greedy = {}   # prompt -> single-process greedy tokens (spec-k 0)
for p in prompts:
    p_ids = tok.encode(p, bos=True)
    want = []
    with torch.no_grad():
        cur = list(p_ids)
        for _ in range(24):
            nxt = int(m(torch.tensor([cur]), mtp=False)[0][0, -1].argmax())
            want.append(nxt)
            if nxt == 1:
                break
            cur.append(nxt)
    got = {}
    for k in range(0, 5):
        g = spex_json("generate", "--model", model_dir, "--prompt", p, "-n", "24", "--spec-k", str(k), "--json")
        got[k] = g["tokens"]
    greedy[p] = got[0]
    ok_ref = got[0] == want
    ok_spec = all(got[k] == got[0] for k in got)
    print(f"greedy {p!r}: matches pytorch {ok_ref}, spec-k 1..4 identical {ok_spec}")
    if not ok_ref:
        fails.append(f"greedy continuation of {p!r} differs: spex {got[0]} pytorch {want}")
    if not ok_spec:
        fails.append(f"speculation changed the greedy output of {p!r}: {got}")

# 4. the same under mpirun: routed experts on 2 worker ranks, every prompt at once (spex batch:
#    continuous batching of all four sequences), for each speculation depth
if shutil.which("mpirun"):
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_mpi_yield_when_idle="1", OPENBLAS_NUM_THREADS="1")
    with tempfile.TemporaryDirectory() as tmp:
        inp = os.path.join(tmp, "in.jsonl")
        with open(inp, "w") as f:
            for i, p in enumerate(prompts):
                f.write(json.dumps({"id": str(i), "prompt": p, "max_tokens": 24, "temperature": 0}) + "\n")
        for k in range(0, 5):
            out = os.path.join(tmp, f"out{k}.jsonl")
            subprocess.run(["mpirun", "--oversubscribe", "-np", "3", spex, "batch", "--model", model_dir, "--input", inp,
                            "--output", out, "--spec-k", str(k), "--codec", "raw+zstd"],
                           check=True, capture_output=True, text=True, env=env, timeout=120)
            res = {r["id"]: r["tokens"] for r in map(json.loads, open(out))}
            same = [res.get(str(i)) == greedy[p] for i, p in enumerate(prompts)]
            print(f"mpirun -np 3 batch spec-k {k}: {sum(same)}/{len(prompts)} prompts identical to single process")
            if not all(same):
                fails.append(f"mpirun -np 3 --spec-k {k}: {res} vs {greedy}")
else:
    print("mpirun not installed: distributed check skipped")

# 5. dynamic routing bias (opt-in): it updates, keeps perplexity close, and is refused with --combine expert
b = spex_json("perplexity", "--model", model_dir, "--file", val, "--ctx", "128", "--json", "--bias-update-rate", "0.001",
              "--bias-update-window", "64")
brel = abs(b["perplexity"] - c["perplexity"]) / c["perplexity"]
print(f"bias update 0.001 / 64 rows: {b['bias_update']['updates']} updates, perplexity {b['perplexity']:.4f} "
      f"(rel diff {brel:.2e}), last window max/mean load {b['bias_update']['last_window_max_over_mean']:.3f}")
if b["bias_update"]["updates"] < 1 or brel > 0.02:
    fails.append(f"dynamic bias: {b}")
bad = subprocess.run([spex, "perplexity", "--model", model_dir, "--file", val, "--bias-update-rate", "0.001",
                      "--combine", "expert"], capture_output=True, text=True)
if bad.returncode == 0 or "no longer exact" not in bad.stderr:
    fails.append(f"--bias-update-rate with --combine expert was not refused: {bad.returncode} {bad.stderr!r}")

if fails:
    print("FAIL:", *fails, sep="\n  ")
    sys.exit(1)
print("shipped model: all checks passed")
