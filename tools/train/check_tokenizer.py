"""Check bpe.py's pre-tokenizer + BPE encoder against Hugging Face `tokenizers` on DeepSeek-V3's own tokenizer:
  /usr/bin/python3 tools/train/check_tokenizer.py tests/data/deepseek-v3-tokenizer"""
import json, sys, os
sys.path.insert(0, os.path.dirname(__file__))
from bpe import Tokenizer

d = sys.argv[1]
tok = Tokenizer.load(f"{d}/tokenizer.json")
tj = json.load(open(f"{d}/tokenizer.json", encoding="utf-8"))
tok.vocab = tj["model"]["vocab"]; tok.inv = {i: s for s, i in tok.vocab.items()}
ok = 0
cases = [json.loads(l) for l in open(f"{d}/cases.jsonl", encoding="utf-8")]
ids = [json.loads(l) for l in open(f"{d}/cases.ids.jsonl")]
for text, ref in zip(cases, ids):
    got = tok.encode(text)
    if got == ref and tok.decode(got) == text: ok += 1
    else: print("MISMATCH", repr(text)[:80], got[:12], ref[:12])
print(f"{ok}/{len(cases)} cases match HF tokenizers")
