#!/usr/bin/env bash
# test_bench_project.sh - `spex bench spec --project DIR`: the projected speedup table.
#
# Timings cannot be tested, but the table's presence, its columns and its
# arithmetic can. Two tiny synthetic checkpoints with an MTP module (the
# benchmarked one and the one projected onto), --max-k 2 -n 4 --reps 1:
#   - stdout has the projection table, K = 0..2, every number finite and > 0
#     where it must be (costs, tok/step, projected speedup);
#   - FILE.project.csv has the documented columns; per K, tok/step equals the
#     main CSV's; step cost = verify + catch-up + (drafts - catch-ups) x draft;
#     projected = tok/step / step cost; K = 0 costs exactly one 1-row step;
#   - a DIR without an MTP module fails (exit 1) naming DIR, before the benchmark.
# Usage: test_bench_project.sh SPEX_BINARY TESTS_DATA_DIR
set -u
spex=$1
tmp=$(mktemp -d /tmp/spex-bench-project-XXXXXX)
trap '[ -n "${KEEP:-}" ] || rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

"$spex" synth --out "$tmp/main" --preset tiny --mtp 1 >/dev/null || fail "synth main"
"$spex" synth --out "$tmp/proj" --preset tiny --mtp 1 --seed 2 --hidden 192 --layers 4 >/dev/null || fail "synth proj"
"$spex" synth --out "$tmp/nomtp" --preset tiny --mtp 0 >/dev/null || fail "synth nomtp"

"$spex" bench spec --model "$tmp/main" --max-k 2 -n 4 --reps 1 --project "$tmp/proj" --csv "$tmp/b.csv" \
    >"$tmp/out.txt" 2>"$tmp/err.txt" || fail "bench spec --project exited $?: $(cat "$tmp/err.txt")"
[ -s "$tmp/b.project.csv" ] || fail "no $tmp/b.project.csv"

/usr/bin/python3 - "$tmp" <<'PY' || fail "projection check"
import csv, math, sys
tmp = sys.argv[1]
out = open(f"{tmp}/out.txt").read().splitlines()
bad = []
head = [i for i, l in enumerate(out) if l.split()[:2] == ["K", "rows"]]
if len(head) != 1 or not any(l.startswith("projected onto ") for l in out):
    bad.append("no projection table on stdout")
else:
    rows = out[head[0] + 1:head[0] + 4]
    for k, l in enumerate(rows):
        f = [float(x.rstrip("x")) for x in l.split()]
        if len(f) != 10 or int(f[0]) != k or not all(math.isfinite(x) for x in f):
            bad.append(f"table row {k}: {l!r}")
        elif not (f[2] > 0 and f[3] > 0 and f[7] > 0 and f[8] > 0 and f[9] > 0):
            bad.append(f"table row {k} not positive: {l!r}")
main = {int(r["k"]): r for r in csv.DictReader(open(f"{tmp}/b.csv"))}
proj = list(csv.DictReader(open(f"{tmp}/b.project.csv")))
cols = ("k,verify_rows,rel_verify_cost,rel_draft_cost,catchups_per_step,catchup_rows,rel_catchup_cost,"
        "drafts_per_step,rel_step_cost,tokens_per_step,projected_speedup,step_ms,draft_ms").split(",")
if not proj or list(proj[0].keys()) != cols:
    bad.append(f"CSV columns {list(proj[0].keys()) if proj else None}")
else:
    if [int(r["k"]) for r in proj] != [0, 1, 2]:
        bad.append(f"CSV ks {[r['k'] for r in proj]}")
    for r in proj:
        k, v = int(r["k"]), {c: float(r[c]) for c in cols}
        if not all(math.isfinite(x) for x in v.values()):
            bad.append(f"K={k}: not finite: {r}")
        if not (v["rel_step_cost"] > 0 and v["projected_speedup"] > 0 and v["step_ms"] > 0 and v["draft_ms"] > 0):
            bad.append(f"K={k}: not positive: {r}")
        if abs(v["tokens_per_step"] - float(main[k]["tokens_per_step"])) > 1e-3:
            bad.append(f"K={k}: tok/step {v['tokens_per_step']} != main table's {main[k]['tokens_per_step']}")
        cost = v["rel_verify_cost"] + v["rel_catchup_cost"] + (v["drafts_per_step"] - v["catchups_per_step"]) * v["rel_draft_cost"]
        if abs(cost - v["rel_step_cost"]) > 2e-3:
            bad.append(f"K={k}: step cost {v['rel_step_cost']} != {cost}")
        if abs(v["projected_speedup"] - v["tokens_per_step"] / v["rel_step_cost"]) > 2e-3:
            bad.append(f"K={k}: projected {v['projected_speedup']} != tok/step / step cost")
        if abs(v["verify_rows"] - 1 - v["drafts_per_step"]) > 1e-3:
            bad.append(f"K={k}: verify rows {v['verify_rows']} != 1 + drafts/step")
        if k == 0 and not (v["rel_step_cost"] == 1 and v["drafts_per_step"] == 0):
            bad.append(f"K=0 is not one plain step: {r}")
print("\n".join(bad) or "projection table and CSV consistent")
sys.exit(1 if bad else 0)
PY

"$spex" bench spec --model "$tmp/main" --max-k 1 -n 4 --reps 1 --project "$tmp/nomtp" >"$tmp/o2" 2>"$tmp/e2"
rc=$?
[ $rc -eq 1 ] || fail "--project without MTP: exit $rc, want 1"
grep -q "$tmp/nomtp" "$tmp/e2" && grep -q "MTP" "$tmp/e2" || fail "--project without MTP: message $(cat "$tmp/e2")"
grep -q "tok/s" "$tmp/o2" && fail "--project without MTP ran the benchmark first"
"$spex" bench spec --help | grep -q -- '--project' || fail "--help does not list --project"

[ $fails -eq 0 ] && echo "PASS" || { echo "$fails failure(s)"; exit 1; }
