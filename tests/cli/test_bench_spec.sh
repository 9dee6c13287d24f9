#!/usr/bin/env bash
# test_bench_spec.sh - `spex bench spec` reports what generation actually did.
#
# A benchmark's timings cannot be tested, but its counts and its arithmetic
# can. On the shipped model, greedy, two prompts, --reps 2:
#   - per K the CSV's steps and acceptance equal twice the sum of what
#     `spex generate --json --spec-k K` reports for the same prompts;
#   - tokens = steps x tokens per step; ideal = tokens per step / step cost;
#     step cost = verify + draft; K = 0 is the speedup reference (1.0) and
#     every speedup lies inside its per-repetition range;
#   - --help exits 0, a bad option exits 2.
# Usage: test_bench_spec.sh SPEX_BINARY TESTS_DATA_DIR
set -u
spex=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
model=$root/models/austen-moe
tmp=$(mktemp -d /tmp/spex-bench-spec-XXXXXX)
trap '[ -n "${KEEP:-}" ] || rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

printf '%s\n' "It is a truth universally acknowledged, that" "Elizabeth looked at Mr. Darcy and" >"$tmp/prompts.txt"
N=24
"$spex" bench spec --model "$model" --prompts "$tmp/prompts.txt" --max-k 3 -n $N --reps 2 --csv "$tmp/b.csv" \
    >"$tmp/table.txt" 2>"$tmp/err.txt" || fail "bench spec exited $?: $(cat "$tmp/err.txt")"
grep -q 'speedup' "$tmp/table.txt" || fail "no table on stdout"
for k in 0 1 2 3; do
    while IFS= read -r p; do
        "$spex" generate --model "$model" --prompt "$p" -n $N --spec-k $k --json
    done <"$tmp/prompts.txt" >"$tmp/gen$k.jsonl" || fail "generate --spec-k $k"
done

/usr/bin/python3 - "$tmp" <<'PY' || fail "CSV check"
import csv, json, sys
tmp = sys.argv[1]
rows = list(csv.DictReader(open(f"{tmp}/b.csv")))
assert [int(r["k"]) for r in rows] == [0, 1, 2, 3], rows
bad = []
for r in rows:
    k = int(r["k"])
    stats = [json.loads(l)["stats"] for l in open(f"{tmp}/gen{k}.jsonl")]
    steps = 2 * sum(s["steps"] for s in stats)
    if int(r["steps"]) != steps:
        bad.append(f"K={k}: steps {r['steps']} != 2 x generate's {steps}")
    tokens, tps = int(r["tokens"]), float(r["tokens_per_step"])
    if abs(tokens / int(r["steps"]) - tps) > 1e-3:
        bad.append(f"K={k}: tokens/steps {tokens}/{r['steps']} != {tps}")
    acc = [float(a) for a in r["acceptance"].split(";")] if r["acceptance"] else []
    if len(acc) != k:
        bad.append(f"K={k}: {len(acc)} acceptance figures")
    for j, a in enumerate(acc):
        drafted = sum(s["drafted_by_position"][j] for s in stats)
        accepted = sum(s["accepted_by_position"][j] for s in stats)
        if not drafted or abs(a - accepted / drafted) > 1e-4:
            bad.append(f"K={k} position {j+1}: acceptance {a} != generate's {accepted}/{drafted}")
    cost, ver, dra = float(r["rel_step_cost"]), float(r["rel_verify_cost"]), float(r["rel_draft_cost"])
    if abs(cost - ver - dra) > 2e-4 or cost <= 0:
        bad.append(f"K={k}: step cost {cost} != verify {ver} + draft {dra}")
    if abs(float(r["ideal_speedup"]) - tps / cost) > 1e-3:
        bad.append(f"K={k}: ideal {r['ideal_speedup']} != {tps}/{cost}")
    sp, lo, hi = float(r["speedup"]), float(r["speedup_min"]), float(r["speedup_max"])
    if not (0 < lo <= hi and lo - 1e-3 <= sp <= hi + 1e-3):
        bad.append(f"K={k}: speedup {sp} outside its range {lo}-{hi}")
    if k == 0 and not (sp == lo == hi == 1.0 and dra < 0.05):   # K = 0 "draft" = accept bookkeeping
        bad.append(f"K=0 is not the reference: {r}")
print("\n".join(bad) or "bench spec CSV consistent with generate")
sys.exit(1 if bad else 0)
PY

"$spex" bench spec --help >"$tmp/help.txt" || fail "--help exited $?"
grep -q -- '--reps' "$tmp/help.txt" || fail "--help does not list --reps"
"$spex" bench spec --model "$model" --reps 0 2>/dev/null; [ $? -eq 2 ] || fail "--reps 0 is not a usage error"
"$spex" bench spec --model "$model" --bogus 2>/dev/null; [ $? -eq 2 ] || fail "unknown option is not a usage error"

[ $fails -eq 0 ] && echo "PASS" || { echo "$fails failure(s)"; exit 1; }
