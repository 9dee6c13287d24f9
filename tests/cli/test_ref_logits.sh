#!/usr/bin/env bash
# test_ref_logits.sh - `spex logits` against an independent numpy DeepSeek-V3
# forward (tests/ref/deepseek_ref.py, float64, textbook attention, its own
# safetensors/BF16/FP8 reading) on token lists OTHER than golden.json's, for all
# three golden checkpoints (F32; BF16 without q_lora; FP8 with block scales):
# main logits (prefill and --decode through the KV cache) and the MTP module's
# logits (row t predicts token t+2; last row uses the main argmax, which must
# match too). Tolerance: max |diff| <= 1e-3 (the golden fixtures' bound; the
# engine's f32 vs the float64 reference differ by ~1e-5, and the reference agrees
# with golden.json to < 1e-5).
# Usage: test_ref_logits.sh SPEX_BINARY TESTS_DATA_DIR
set -u
spex=$1
data=$(cd "$2" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
ref=$here/../ref/deepseek_ref.py
py=/usr/bin/python3
tmp=$(mktemp -d /tmp/spex-reflogits-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

if ! "$py" -c 'import numpy' 2>/dev/null; then
    echo "FAIL: $py cannot import numpy; install python3-numpy (scripts/setup.sh does)"
    exit 1
fi

# Not golden.json's [5,17,42,3,99,250,7,7,1,300,12,64]: different lengths, repeats, ids 0 and 319.
lists=("11,203,4,4,97,318,0,150,62,2,279,33,7,190" "319,1,256" "42")
for fx in tiny-f32 tiny-bf16-noq tiny-fp8; do
    m=$data/golden/$fx
    for i in "${!lists[@]}"; do
        toks=${lists[$i]}
        "$py" "$ref" "$m" --tokens "$toks" --mtp >"$tmp/ref.json" || { fail "$fx: reference failed"; continue; }
        "$spex" logits --model "$m" --tokens "$toks" --mtp >"$tmp/p.json" 2>"$tmp/err" ||
            { fail "$fx: spex logits exit $?: $(cat "$tmp/err")"; continue; }
        "$spex" logits --model "$m" --tokens "$toks" --mtp --decode >"$tmp/d.json" 2>"$tmp/err" ||
            { fail "$fx: spex logits --decode exit $?: $(cat "$tmp/err")"; continue; }
        "$py" - "$tmp/ref.json" "$tmp/p.json" "$tmp/d.json" "$fx tokens[$i]" <<'PY' || fail "$fx tokens ${toks}"
import json, sys
r, p, d = (json.load(open(f)) for f in sys.argv[1:4])
what, tol, ok = sys.argv[4], 1e-3, True
def maxdiff(a, b):
    assert len(a) == len(b) and all(len(x) == len(y) for x, y in zip(a, b)), "shape mismatch"
    return max(abs(x - y) for ra, rb in zip(a, b) for x, y in zip(ra, rb))
for mode, s in (("prefill", p), ("decode", d)):
    assert s["tokens"] == r["tokens"], (s["tokens"], r["tokens"])
    dm, dt = maxdiff(s["logits"], r["logits"]), maxdiff(s["mtp_logits"], r["mtp_logits"])
    print(f"{what:24s} {mode:7s} logits max|diff| {dm:.3g}  mtp max|diff| {dt:.3g}")
    if not dm <= tol:
        print(f"  {mode}: main logits differ from the reference by {dm:.3g} > {tol}"); ok = False
    if not dt <= tol:
        print(f"  {mode}: MTP logits differ from the reference by {dt:.3g} > {tol}"); ok = False
    if s["mtp_next_token"] != r["mtp_next_token"]:
        print(f"  {mode}: mtp_next_token {s['mtp_next_token']} vs reference {r['mtp_next_token']}"); ok = False
sys.exit(0 if ok else 1)
PY
    done
done

if [ $fails -ne 0 ]; then echo "$fails check(s) failed"; exit 1; fi
echo "ok"
