#!/usr/bin/env bash
# test_inspect.sh - `spex inspect` and `spex synth` end to end: the golden models
# inspect cleanly (text and JSON), a truncated copy fails with exit 1 naming the
# file, a model with a tensor of the wrong shape fails naming the tensor, and a
# synthesized sharded FP8 model inspects with the expected counts.
# Usage: test_inspect.sh SPEX_BINARY TESTS_DATA_DIR
set -u
spex=$1
data=$(cd "$2" && pwd)
tmp=$(mktemp -d /tmp/spex-inspect-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

for m in tiny-f32 tiny-bf16-noq tiny-fp8; do
    out=$("$spex" inspect --model "$data/golden/$m" 2>"$tmp/err") || fail "$m: exit $? ($(cat "$tmp/err"))"
    grep -q "active per token" <<<"$out" || fail "$m: no active-per-token line"
    grep -q "every tensor the architecture needs is present" <<<"$out" || fail "$m: no check line"
    "$spex" inspect --model "$data/golden/$m" --json >"$tmp/j.json" || fail "$m --json: exit $?"
    /usr/bin/python3 - "$tmp/j.json" <<'PY' || fail "$m: JSON content"
import json, sys
j = json.load(open(sys.argv[1]))
p = j["parameters"]
assert j["check"] == "ok" and j["tensors"] > 150 and j["unused_tensors"] == 0, j["tensors"]
assert p["total"] == p["main"] + p["mtp"]
# tiny: 16 experts of 3*96*128, 2 main MoE layers, 4 active per token
assert p["routed_experts_main"] == 2 * 16 * 3 * 96 * 128, p
assert p["active_per_token"] == p["main"] - p["routed_experts_main"] + 2 * 4 * 3 * 96 * 128, p
assert j["config"]["hidden_size"] == 128
PY
done
grep -q "F8_E4M3" <<<"$("$spex" inspect --model "$data/golden/tiny-fp8")" || fail "fp8: no F8_E4M3 bytes line"

# truncated copy: exit 1, message names the file
mkdir -p "$tmp/trunc"
cp "$data/golden/tiny-f32/config.json" "$tmp/trunc/"
head -c 100000 "$data/golden/tiny-f32/model.safetensors" >"$tmp/trunc/model.safetensors"
"$spex" inspect --model "$tmp/trunc" >/dev/null 2>"$tmp/err"
rc=$?
[ $rc -eq 1 ] || fail "truncated: exit $rc, want 1"
grep -q "model.safetensors" "$tmp/err" || fail "truncated: file name not in: $(cat "$tmp/err")"

# config that disagrees with the tensors: exit 1, message names the tensor
mkdir -p "$tmp/shape"
ln -s "$data/golden/tiny-f32/model.safetensors" "$tmp/shape/model.safetensors"
sed 's/"moe_intermediate_size": 96/"moe_intermediate_size": 64/' "$data/golden/tiny-f32/config.json" >"$tmp/shape/config.json"
"$spex" inspect --model "$tmp/shape" >/dev/null 2>"$tmp/err"
rc=$?
[ $rc -eq 1 ] || fail "shape: exit $rc, want 1"
grep -q "experts.0.gate_proj.weight" "$tmp/err" || fail "shape: tensor not named in: $(cat "$tmp/err")"

# missing directory, bad usage
"$spex" inspect --model "$tmp/nothing" >/dev/null 2>&1
[ $? -eq 1 ] || fail "missing dir: want exit 1"
"$spex" inspect >/dev/null 2>&1
[ $? -eq 2 ] || fail "no --model: want exit 2"

# synth -> inspect round trip (sharded FP8, overrides)
"$spex" synth --out "$tmp/syn" --preset tiny --dtype fp8 --shards 3 --experts 8 --groups 2 --topk-groups 1 \
    --mtp 0 --seed 7 >/dev/null 2>"$tmp/err" || fail "synth: $(cat "$tmp/err")"
"$spex" inspect --model "$tmp/syn" --json >"$tmp/j.json" || fail "inspect synth: exit $?"
/usr/bin/python3 - "$tmp/j.json" <<'PY' || fail "synth JSON content"
import json, sys
j = json.load(open(sys.argv[1]))
assert len(j["files"]) == 3, j["files"]
assert j["config"]["n_routed_experts"] == 8 and j["config"]["num_nextn_predict_layers"] == 0
assert j["parameters"]["mtp"] == 0
assert "F8_E4M3" in j["bytes_by_dtype"] and j["config"]["fp8_block"] == [128, 128]
PY
"$spex" synth --out "$tmp/syn" >/dev/null 2>"$tmp/err"
[ $? -eq 1 ] || fail "synth over an existing checkpoint: want exit 1"
"$spex" synth --out "$tmp/syn2" --dtype f64 >/dev/null 2>&1
[ $? -eq 2 ] || fail "synth bad dtype: want exit 2"
"$spex" synth --out "$tmp/syn2" --experts 6 >/dev/null 2>"$tmp/err"
[ $? -eq 1 ] && grep -q "n_group" "$tmp/err" || fail "synth bad config: $(cat "$tmp/err")"

if [ $fails -ne 0 ]; then echo "$fails failure(s)"; exit 1; fi
echo "test_inspect: all passed"
