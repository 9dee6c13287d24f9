#!/usr/bin/env bash
# test_engine_cli.sh - `spex logits` and `spex generate` end to end, as a user runs them:
# logits JSON has one row of vocab_size floats per token; --decode (KV cache)
# agrees with the prefill rows to 1e-4; --mtp adds MTP rows; generate --json
# carries tokens/text/stats, speculation keeps greedy tokens and reports
# acceptance; and bad input fails cleanly: out-of-vocabulary ids, a prompt
# longer than the context, a missing or truncated model, unknown options.
# Usage: test_engine_cli.sh SPEX_BINARY TESTS_DATA_DIR
set -u
spex=$1
data=$(cd "$2" && pwd)
tmp=$(mktemp -d /tmp/spex-engine-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
m=$data/golden/tiny-f32

"$spex" logits --model "$m" --tokens 5,17,42,3 >"$tmp/p.json" || fail "logits prefill exit $?"
"$spex" logits --model "$m" --tokens 5,17,42,3 --decode --mtp >"$tmp/d.json" || fail "logits decode exit $?"
/usr/bin/python3 - "$tmp/p.json" "$tmp/d.json" <<'PY' || fail "logits content"
import json, sys
p, d = (json.load(open(f)) for f in sys.argv[1:3])
assert p["tokens"] == [5, 17, 42, 3] and len(p["logits"]) == 4 and all(len(r) == 320 for r in p["logits"])
diff = max(abs(a - b) for ra, rb in zip(p["logits"], d["logits"]) for a, b in zip(ra, rb))
assert diff < 1e-4, f"decode vs prefill differ by {diff}"
assert len(d["mtp_logits"]) == 4 and isinstance(d["mtp_next_token"], int)
PY

"$spex" generate --model "$m" --tokens 5,17,42 -n 12 --json >"$tmp/g0.json" || fail "generate exit $?"
"$spex" generate --model "$m" --tokens 5,17,42 -n 12 --spec-k 3 --json --stats "$tmp/s.json" >"$tmp/g3.json" \
    || fail "generate spec exit $?"
"$spex" generate --model "$m" --tokens 5,17,42 -n 12 --spec-k 3 --json --stats "$tmp/sl.json" --loopback-ranks 1 \
    >"$tmp/g3l.json" || fail "generate spec loopback exit $?"
"$spex" generate --model "$m" --tokens 5,17,42 -n 12 --json --loopback-ranks 1 >"$tmp/g0l.json" \
    || fail "generate loopback exit $?"
/usr/bin/python3 - "$tmp/g0.json" "$tmp/g3.json" "$tmp/sl.json" "$tmp/s.json" "$tmp/g3l.json" "$tmp/g0l.json" <<'PY' || fail "generate content"
import json, sys
g0, g3, s, s_inproc, g3l, g0l = (json.load(open(f)) for f in sys.argv[1:7])
# one process: experts in-process by default (no wire, no expert-parallel statistics), and
# the same tokens as through the loopback wire
assert "expert_parallelism" not in s_inproc and g3l["tokens"] == g3["tokens"], s_inproc.keys()
assert len(g0["tokens"]) == 12 and g0["tokens"] == g3["tokens"], (g0["tokens"], g3["tokens"])
st = g3["stats"]
assert st["spec_k"] == 3 and len(st["acceptance_by_position"]) == 3 and st["steps"] >= 1
assert st["drafted"] == st["accepted"] + st["rejected"]
# the --stats file: the same object, plus the expert-parallel statistics (here of the in-process loopback rank)
st = g3l["stats"]
ep = s.pop("expert_parallelism")
assert s == st and ep["world"] == 2 and ep["total"]["dispatch"]["messages"] > 0, (s, st, ep["total"])
# no --spec-k on a model with an MTP module: 1 in one process, 3 with expert ranks (engine.h:
# spex_default_spec_k); lossless, so the same tokens as an explicit 3
assert g0["stats"]["finish_reason"] == "length" and g0["stats"]["spec_k"] == 1, g0["stats"]
assert g0l["stats"]["spec_k"] == 3 and g0l["tokens"] == g0["tokens"] == g3["tokens"], (g0l["stats"], g0l["tokens"])
PY
"$spex" generate --model "$m" --tokens 5,17,42 -n 12 --spec-k 0 --json >"$tmp/gk0.json" || fail "generate --spec-k 0 exit $?"
/usr/bin/python3 - "$tmp/g0.json" "$tmp/gk0.json" <<'PY' || fail "generate --spec-k 0 content"
import json, sys
g0, k0 = (json.load(open(f)) for f in sys.argv[1:3])
assert k0["stats"]["spec_k"] == 0 and k0["tokens"] == g0["tokens"], (k0["stats"], k0["tokens"], g0["tokens"])
PY

expect_fail() {  # expect_fail CODE PATTERN ARGS...: exit status CODE and PATTERN on stderr
    local code=$1 pat=$2
    shift 2
    "$spex" "$@" >"$tmp/out" 2>"$tmp/err"
    local rc=$?
    [ $rc -eq "$code" ] || fail "$*: exit $rc, want $code"
    grep -q -- "$pat" "$tmp/err" || fail "$*: stderr lacks '$pat': $(cat "$tmp/err")"
    [ -s "$tmp/out" ] && fail "$*: printed to stdout on error"
}
expect_fail 1 "outside the vocabulary" logits --model "$m" --tokens 5,320
expect_fail 1 "exceeds the context" generate --model "$m" --tokens 5 -n 1000
expect_fail 1 "config.json" logits --model "$tmp/nonexistent" --tokens 1
expect_fail 2 "unknown option" logits --model "$m" --tokens 1 --bogus
expect_fail 2 "spec-k" generate --model "$m" --tokens 1 --spec-k 99
expect_fail 2 "temperature" generate --model "$m" --tokens 1 --temperature -1
expect_fail 2 "unknown element format 'lz4'" logits --model "$m" --tokens 1 --codec lz4
expect_fail 2 "expected expert or presum" generate --model "$m" --tokens 1 --combine sum
expect_fail 1 "--placement has no effect with --no-ep" logits --model "$m" --tokens 1 --no-ep --placement x.json
"$spex" synth --out "$tmp/nomtp" --mtp 0 --vocab 4096 >/dev/null && cp "$data/../../models/austen-moe/tokenizer.json" "$tmp/nomtp/" || fail "synth --mtp 0"
printf 'Some text to score, long enough for a few windows of eight tokens.\n' >"$tmp/text.txt"
"$spex" generate --model "$tmp/nomtp" --tokens 5,6 -n 3 --json >"$tmp/nomtp.json" 2>"$tmp/nomtp.err" \
    && grep -q '"spec_k":0' "$tmp/nomtp.json" || fail "generate without MTP, no --spec-k: $(cat "$tmp/nomtp.err")"
expect_fail 1 "the model has no MTP module" perplexity --model "$tmp/nomtp" --file "$tmp/text.txt" --ctx 8 --mtp
mkdir -p "$tmp/trunc" && cp "$m/config.json" "$tmp/trunc/" && head -c 100000 "$m/model.safetensors" >"$tmp/trunc/model.safetensors"
expect_fail 1 "model.safetensors" logits --model "$tmp/trunc" --tokens 1

if [ $fails -ne 0 ]; then echo "$fails check(s) failed"; exit 1; fi
echo "engine CLI: all checks passed"
