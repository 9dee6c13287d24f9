#!/usr/bin/env bash
# test_eplb.sh - load balancing end to end, without a launcher (in-process loopback worker ranks):
#   - `spex synth --skew S` gives measurably skewed expert load: max/mean tokens per expert over
#     256 random tokens grows with S (0 < 0.5 < 1 < 1.5), and so does the busiest rank under the
#     contiguous placement;
#   - `spex placement --from-stats FILE --redundant R` writes a per-layer table that loads back,
#     gives logits bit-identical to one process, and lowers the measured busiest rank / mean;
#   - bad input fails naming the file and field: bad JSON, stats of another model, R too large,
#     --redundant without --from-stats (usage, exit 2).
# Usage: test_eplb.sh SPEX_BINARY TESTS_DATA_DIR
set -u
spex=$1
data=$(cd "$2" && pwd)
tmp=$(mktemp -d /tmp/spex-eplb-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
toks=$(/usr/bin/python3 -c 'import random; random.seed(7); print(",".join(str(random.randrange(512)) for _ in range(256)))')
imb() { /usr/bin/python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); l=s["expert_load"]
print(sum(x["max"] for x in l) / sum(x["mean"] for x in l), s["rank_max_over_mean"])' "$1"; }

# ---- synth --skew: imbalance grows with S
prev_e=0 prev_r=0
for s in 0 0.5 1 1.5; do
    "$spex" synth --out "$tmp/m$s" --hidden 64 --layers 3 --dense-layers 1 --experts 16 --experts-per-tok 2 \
        --groups 1 --topk-groups 1 --vocab 512 --mtp 0 --skew $s >/dev/null || { fail "synth --skew $s: exit $?"; continue; }
    "$spex" logits --model "$tmp/m$s" --tokens "$toks" --loopback-ranks 4 --ep-stats "$tmp/st$s.json" >/dev/null 2>&1 \
        || fail "logits on skew $s: exit $?"
    read -r e r <<<"$(imb "$tmp/st$s.json")"
    echo "skew $s: tokens/expert max/mean $e, busiest rank/mean $r"
    /usr/bin/python3 -c "import sys; sys.exit(not ($e > $prev_e and $r > $prev_r))" \
        || fail "skew $s: imbalance $e / $r not above the previous $prev_e / $prev_r"
    prev_e=$e prev_r=$r
done
/usr/bin/python3 -c "import sys; sys.exit(not ($prev_e > 2.5))" || fail "skew 1.5: max/mean $prev_e, want > 2.5"

# ---- --from-stats: per-layer table, identical logits, lower measured imbalance
m=$tmp/m1
"$spex" placement --model "$m" --np 5 --from-stats "$tmp/st1.json" --redundant 8 --json >"$tmp/pl.json" 2>"$tmp/pl.err" \
    || fail "placement --from-stats: exit $? $(cat "$tmp/pl.err")"
grep -q '"layers":\[{"layer":1' "$tmp/pl.json" || fail "no per-layer tables: $(head -c 300 "$tmp/pl.json")"
grep -q "busiest rank / mean" "$tmp/pl.err" || fail "no balance report on stderr"
"$spex" placement --model "$m" --np 5 --placement "$tmp/pl.json" >/dev/null || fail "derived placement does not load back"
"$spex" placement --model "$m" --np 5 --from-stats "$tmp/st1.json" --redundant 8 >"$tmp/pl.txt" || fail "text exit $?"
grep -q "^layer 2: 8 replicated\|^layer 2: [0-9]* replicated, 24 expert slots" "$tmp/pl.txt" || fail "text table: $(cat "$tmp/pl.txt")"
"$spex" logits --model "$m" --tokens "$toks" --no-ep >"$tmp/ref.json" 2>/dev/null || fail "reference exit $?"
"$spex" logits --model "$m" --tokens "$toks" --loopback-ranks 4 --placement "$tmp/pl.json" --ep-stats "$tmp/after.json" \
    >"$tmp/eplb.json" 2>/dev/null || fail "logits with the derived placement: exit $?"
cmp -s "$tmp/ref.json" "$tmp/eplb.json" || fail "logits with the derived placement differ from one process"
read -r _ before <<<"$(imb "$tmp/st1.json")"
read -r _ after <<<"$(imb "$tmp/after.json")"
echo "busiest rank / mean: contiguous $before, derived (R = 8) $after"
/usr/bin/python3 -c "import sys; sys.exit(not ($after < $before and $after <= 1.15))" \
    || fail "derived placement: busiest rank / mean $after (contiguous $before), want lower and <= 1.15"

# ---- bad input
expect() {  # expect NAME WANT_EXIT WANT_TEXT ARGS...
    local name=$1 want=$2 text=$3
    shift 3
    "$spex" placement "$@" >/dev/null 2>"$tmp/e"
    local rc=$?
    [ $rc -eq "$want" ] || fail "$name: exit $rc, want $want ($(cat "$tmp/e"))"
    grep -qF -- "$text" "$tmp/e" || fail "$name: '$(cat "$tmp/e")' lacks '$text'"
}
echo '{"expert_load": [' >"$tmp/bad.json"
expect bad-json 1 "stats '$tmp/bad.json': not valid JSON" --model "$m" --np 5 --from-stats "$tmp/bad.json"
"$spex" logits --model "$data/golden/tiny-f32" --tokens 5,17,42 --loopback-ranks 2 --ep-stats "$tmp/other.json" \
    >/dev/null 2>&1 || fail "other model stats: exit $?"
"$spex" synth --out "$tmp/m2l" --hidden 64 --layers 2 --dense-layers 1 --experts 16 --experts-per-tok 2 \
    --groups 1 --topk-groups 1 --vocab 512 --mtp 0 >/dev/null
expect other-model 1 "expert_load[1].layer 2: the model has no MoE layer 2" --model "$tmp/m2l" --np 5 \
    --from-stats "$tmp/other.json"
"$spex" synth --out "$tmp/m32" --hidden 64 --layers 3 --dense-layers 1 --experts 32 --experts-per-tok 2 \
    --groups 1 --topk-groups 1 --vocab 512 --mtp 0 >/dev/null
expect expert-count 1 "tokens_per_expert has 16 entries, the model has 32 routed experts" --model "$tmp/m32" --np 5 \
    --from-stats "$tmp/st1.json"
expect too-many 1 "at most 48 redundant experts" --model "$m" --np 5 --from-stats "$tmp/st1.json" --redundant 49
expect one-worker 1 "at most 0 redundant" --model "$m" --np 2 --from-stats "$tmp/st1.json" --redundant 1
expect no-stats 2 "--redundant needs --from-stats" --model "$m" --np 5 --redundant 2
expect missing 1 "/nonexistent.json" --model "$m" --np 5 --from-stats /nonexistent.json

[ $fails -eq 0 ] && echo "eplb: all checks passed"
exit $((fails > 0))
