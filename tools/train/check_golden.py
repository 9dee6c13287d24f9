"""Check model.py against tests/data/golden/{tiny-f32,tiny-bf16-noq}/golden.json (official DeepSeek-V3 code outputs).
  /usr/bin/python3 tools/train/check_golden.py tests/data/golden/tiny-f32 tests/data/golden/tiny-bf16-noq"""
import json, sys, os
import torch
sys.path.insert(0, os.path.dirname(__file__))
import model, sfile

for d in sys.argv[1:]:
    cfg = json.load(open(f"{d}/config.json")); g = json.load(open(f"{d}/golden.json"))
    m = model.DeepseekV3(cfg).eval()
    m.load_state_dict(sfile.load(f"{d}/model.safetensors"))
    toks = torch.tensor([g["tokens"]])
    with torch.no_grad():
        logits, mtp = m(toks)
    ref = torch.tensor(g["prefill_logits"])
    mref = torch.tensor(g["mtp"]["logits"])[: mtp.size(1)]
    print(f"{d}: main max|diff| {(logits[0] - ref).abs().max():.2e}  mtp max|diff| {(mtp[0] - mref).abs().max():.2e}")
