#!/usr/bin/env bash
# test_batch.sh - `spex batch` end to end: results, bad lines, resume, SIGTERM, SIGKILL.
#
# On the golden tiny-f32 checkpoint with tests/data/tiny-tokenizer:
#   - a clean run writes one result line per good id (id, text, tokens, usage,
#     timing) and one error line per bad input line (by line number), exit 0;
#     greedy results equal `spex generate`;
#   - rerunning skips everything: the files do not change;
#   - a truncated last output line (a write cut by SIGKILL) is dropped and redone;
#   - SIGTERM stops after the current step with exit 75 (requeue), the rerun finishes;
#   - SIGKILL at random moments, rerun until exit 0: every id exactly once, and
#     the same results as the clean run (seeds derive from the id);
#   - numeric ids above 2^53 are echoed as written, do not collide, and resume;
#   - string ids holding \u0000 stay distinct, a NUL in a prompt counts, a line with trailing
#     characters is an error, and --output (or --errors) naming the input is a usage error.
# Usage: test_batch.sh SPEX_BINARY TESTS_DATA_DIR
set -u
spex=$1
data=$(cd "$2" && pwd)
tmp=$(mktemp -d /tmp/spex-batch-XXXXXX)
trap '[ -n "${KEEP:-}" ] || rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
py() { /usr/bin/python3 "$@"; }

m=$tmp/tiny
mkdir -p "$m"
for f in config.json model.safetensors; do ln -s "$data/golden/tiny-f32/$f" "$m/$f"; done
for f in tokenizer.json tokenizer_config.json; do ln -s "$data/tiny-tokenizer/$f" "$m/$f"; done

# N good lines (greedy and sampled, prompts as ids, text and chat) and some bad ones
N=160
py - "$N" >"$tmp/in.jsonl" <<'PY'
import json, sys
n = int(sys.argv[1])
bad = {5: "this is not json", 9: json.dumps({"prompt": "no id"}), 14: json.dumps({"id": 3, "prompt": [5, 6], "max_tokens": "x"}),
       20: json.dumps({"id": [1], "prompt": "list id"}), 27: json.dumps({"id": "p-1", "prompt": "duplicate"}),
       33: json.dumps({"id": "long", "prompt": [5] * 300}), 40: ""}
out, k, line = [], 0, 0
while k < n:
    line += 1
    if line in bad:
        out.append(bad[line]); continue
    r = {"id": f"p-{k}" if k % 4 else k, "max_tokens": 20 + (k * 37) % 60}
    if k % 5 == 0: r["messages"] = [{"role": "user", "content": f"Tell me about letter {k}"}]
    elif k % 2: r["prompt"] = [2 + (k * 13 + j * 7) % 300 for j in range(1 + k % 9)]
    else: r["prompt"] = f"Chapter {k}. It was"
    r["temperature"] = 0 if k % 3 else 0.8
    out.append(json.dumps(r)); k += 1
print("\n".join(out))
PY
bad_lines="5 9 14 20 27 33"   # line 40 is blank: skipped, not an error

check_results() {  # check_results OUT ERRORS [REFERENCE_OUT]: every id once, errors by line, same results
    py - "$tmp/in.jsonl" "$@" <<'PY'
import json, sys
inp, out, errs = sys.argv[1:4]
want = []
for line in open(inp):
    try:
        o = json.loads(line)
    except ValueError:
        continue
    if isinstance(o, dict) and isinstance(o.get("id"), (str, int)) and o.get("max_tokens") != "x" \
            and o.get("prompt") != "duplicate" and o.get("id") != "long":
        want.append(o["id"])
raw = open(out).read()
assert raw.endswith("\n"), "output does not end with a newline"
res = [json.loads(l) for l in raw.splitlines()]
ids = [r["id"] for r in res]
assert len(ids) == len(set(ids)), "duplicated ids: %s" % sorted({str(i) for i in ids if ids.count(i) > 1})
assert sorted(map(str, ids)) == sorted(map(str, want)), "lost: %s" % (set(map(str, want)) - set(map(str, ids)))
for r in res:
    assert set(r) >= {"id", "text", "tokens", "usage", "finish_reason", "timing", "line"}, r
    assert r["usage"]["completion_tokens"] == len(r["tokens"]) >= 1
    assert r["timing"]["total_seconds"] >= r["timing"]["ttft_seconds"] >= 0
e = [json.loads(l) for l in open(errs)]
assert sorted(x["line"] for x in e) == [5, 9, 14, 20, 27, 33], e
assert all(x["error"]["message"] for x in e)
by_line = {x["line"]: x for x in e}
assert by_line[14]["error"]["param"] == "max_tokens" and by_line[14]["id"] == 3
assert "duplicate" in by_line[27]["error"]["message"] and by_line[33]["error"]["param"] == "prompt"
if len(sys.argv) > 4:
    ref = {str(r["id"]): r for r in map(json.loads, open(sys.argv[4]))}
    for r in res:
        a = ref[str(r["id"])]
        assert (r["tokens"], r["text"], r["line"]) == (a["tokens"], a["text"], a["line"]), r["id"]
PY
}

# clean run
"$spex" batch --model "$m" --input "$tmp/in.jsonl" --output "$tmp/ref.jsonl" --max-running 8 --spec-k 2 \
    2>"$tmp/log" || fail "clean run exit $?: $(tail -3 "$tmp/log")"
check_results "$tmp/ref.jsonl" "$tmp/ref.jsonl.errors.jsonl" || fail "clean run results"
grep -q "done: $N results" "$tmp/log" || fail "clean run summary: $(tail -2 "$tmp/log")"
# a greedy line equals `spex generate`
py - "$tmp/in.jsonl" "$tmp/ref.jsonl" >"$tmp/one" <<'PY'
import json, sys
res = {str(r["id"]): r for r in map(json.loads, open(sys.argv[2]))}
for l in open(sys.argv[1]):
    try:
        o = json.loads(l)
    except ValueError:
        continue
    if isinstance(o, dict) and isinstance(o.get("prompt"), list) and o.get("temperature") == 0 and len(o["prompt"]) > 3:
        r = res[str(o["id"])]
        print(",".join(map(str, o["prompt"])), o["max_tokens"], ",".join(map(str, r["tokens"])))
        break
PY
read -r ptoks nmax rtoks <"$tmp/one"
"$spex" generate --model "$m" --tokens "$ptoks" -n "$nmax" --json 2>/dev/null \
    | py -c 'import json,sys; print(",".join(map(str, json.load(sys.stdin)["tokens"])))' >"$tmp/gen"
[ "$(cat "$tmp/gen")" = "$rtoks" ] || fail "batch greedy != generate: $rtoks vs $(cat "$tmp/gen")"

# rerun: nothing to do, files unchanged
cp "$tmp/ref.jsonl" "$tmp/ref.before"
cp "$tmp/ref.jsonl.errors.jsonl" "$tmp/err.before"
"$spex" batch --model "$m" --input "$tmp/in.jsonl" --output "$tmp/ref.jsonl" 2>"$tmp/log" || fail "rerun exit $?"
cmp -s "$tmp/ref.jsonl" "$tmp/ref.before" || fail "rerun changed the output"
cmp -s "$tmp/ref.jsonl.errors.jsonl" "$tmp/err.before" || fail "rerun changed the errors file"
grep -q "0 results this run, $N skipped" "$tmp/log" || fail "rerun summary: $(tail -2 "$tmp/log")"

# a truncated last line (killed mid-write) is dropped and its id redone
head -n 100 "$tmp/ref.before" >"$tmp/trunc.jsonl"
sed -n 101p "$tmp/ref.before" | head -c 40 >>"$tmp/trunc.jsonl"
cp "$tmp/err.before" "$tmp/trunc.jsonl.errors.jsonl"
"$spex" batch --model "$m" --input "$tmp/in.jsonl" --output "$tmp/trunc.jsonl" --max-running 8 --spec-k 2 \
    2>"$tmp/log" || fail "resume after truncation exit $?"
grep -q "truncated last line" "$tmp/log" || fail "truncation not reported"
check_results "$tmp/trunc.jsonl" "$tmp/trunc.jsonl.errors.jsonl" "$tmp/ref.jsonl" || fail "resume after truncation"

# SIGTERM: exit 75 with work left, the rerun completes (batch of 1 so the run is long enough to interrupt)
"$spex" batch --model "$m" --input "$tmp/in.jsonl" --output "$tmp/term.jsonl" --max-running 1 --spec-k 2 \
    --progress-interval 0.1 2>"$tmp/log" &
pid=$!
for _ in $(seq 1 400); do [ -s "$tmp/term.jsonl" ] && break; sleep 0.01; done
kill -TERM $pid
wait $pid
rc=$?
[ $rc -eq 75 ] || fail "SIGTERM exit $rc, want 75: $(tail -3 "$tmp/log")"
grep -q "rerun the same command to resume" "$tmp/log" || fail "SIGTERM message"
n1=$(wc -l <"$tmp/term.jsonl")
[ "$n1" -ge 1 ] && [ "$n1" -lt $N ] || fail "SIGTERM run wrote $n1 lines"
"$spex" batch --model "$m" --input "$tmp/in.jsonl" --output "$tmp/term.jsonl" --max-running 8 --spec-k 2 \
    2>"$tmp/log" || fail "resume after SIGTERM exit $?"
check_results "$tmp/term.jsonl" "$tmp/term.jsonl.errors.jsonl" "$tmp/ref.jsonl" || fail "resume after SIGTERM"

# SIGKILL at random moments until a run completes
rm -f "$tmp/kill.jsonl"*
kills=0
for attempt in $(seq 1 12); do
    "$spex" batch --model "$m" --input "$tmp/in.jsonl" --output "$tmp/kill.jsonl" --max-running 4 --spec-k 2 \
        2>>"$tmp/kill.log" &
    pid=$!
    sleep "0.$((RANDOM % 5))$((RANDOM % 10))"   # 0 to 0.49 s: loading, mid-step, mid-write...
    if kill -9 $pid 2>/dev/null; then
        wait $pid 2>/dev/null
        kills=$((kills + 1))
    else
        wait $pid
        rc=$?
        [ $rc -eq 0 ] || fail "run after kills exit $rc"
        break
    fi
done
"$spex" batch --model "$m" --input "$tmp/in.jsonl" --output "$tmp/kill.jsonl" --spec-k 2 2>>"$tmp/kill.log" \
    || fail "final run after kills exit $?"
[ $kills -ge 2 ] || fail "only $kills kills landed"
[ "$(grep -c "resuming" "$tmp/kill.log")" -ge 2 ] || fail "the killed runs never resumed anything"
check_results "$tmp/kill.jsonl" "$tmp/kill.jsonl.errors.jsonl" "$tmp/ref.jsonl" || fail "results after $kills SIGKILLs"

# numeric ids above 2^53 are echoed exactly as written and do not collide (issue 16 item 5)
cat >"$tmp/big.jsonl" <<'EOF2'
{"id": 1234567890123456789, "prompt": [5, 6, 7], "max_tokens": 2, "temperature": 0}
{"id": 1234567890123456788, "prompt": [5, 6, 7], "max_tokens": 2, "temperature": 0}
{"id": 9007199254740993, "prompt": [5, 6], "max_tokens": 2, "temperature": 0}
{"id": 1234567890123456789, "prompt": [5], "max_tokens": 2, "temperature": 0}
EOF2
"$spex" batch --model "$m" --input "$tmp/big.jsonl" --output "$tmp/big.out" 2>/dev/null || fail "big ids: exit $?"
ids=$(grep -o '^{"id":[^,]*' "$tmp/big.out" | cut -d: -f2 | sort | tr '\n' ' ')
[ "$ids" = "1234567890123456788 1234567890123456789 9007199254740993 " ] || fail "big ids echoed as: $ids"
grep -q '"line":4,"id":1234567890123456789,.*duplicate' "$tmp/big.out.errors.jsonl" \
    || fail "big ids: line 4 should be the only duplicate: $(cat "$tmp/big.out.errors.jsonl")"
[ "$(wc -l <"$tmp/big.out.errors.jsonl")" = 1 ] || fail "big ids: $(wc -l <"$tmp/big.out.errors.jsonl") error lines"
"$spex" batch --model "$m" --input "$tmp/big.jsonl" --output "$tmp/big.out" 2>"$tmp/big.log" || fail "big ids rerun"
grep -q "0 results this run, 3 skipped" "$tmp/big.log" || fail "big ids rerun: $(tail -1 "$tmp/big.log")"

# string ids keep their NUL (issue 16 item 4): "nul\u0000id", "nul\u0000id2" and "nul" are three
# ids, echoed with the \u0000; a NUL inside a prompt counts (more prompt tokens than without it);
# a line with characters after its JSON object is an error, not run (issue 16 item 7)
cat >"$tmp/nul.jsonl" <<'EOF2'
{"id": "nul\u0000id", "prompt": "hello", "max_tokens": 1, "temperature": 0}
{"id": "nul\u0000id2", "prompt": "hello", "max_tokens": 1, "temperature": 0}
{"id": "nul", "prompt": "hello\u0000 world", "max_tokens": 1, "temperature": 0}
{"id": "tail", "prompt": "hello", "max_tokens": 1} {"id": "x"}
EOF2
"$spex" batch --model "$m" --input "$tmp/nul.jsonl" --output "$tmp/nul.out" 2>/dev/null || fail "NUL ids: exit $?"
ids=$(grep -o '^{"id":"[^"]*"' "$tmp/nul.out" | cut -d: -f2 | sort | tr '\n' ' ')
[ "$ids" = '"nul" "nul\u0000id" "nul\u0000id2" ' ] || fail "NUL ids echoed as: $ids"
[ "$(grep -c duplicate "$tmp/nul.out.errors.jsonl")" = 0 ] || fail "NUL ids: a duplicate was reported"
py - "$tmp/nul.out" <<'PY' || fail "NUL in a prompt: not counted"
import json, sys
r = {o["id"]: o for o in map(json.loads, open(sys.argv[1]))}
sys.exit(0 if r["nul"]["usage"]["prompt_tokens"] > r["nul\u0000id"]["usage"]["prompt_tokens"] else 1)
PY
grep -q '"line":4,.*JSON value' "$tmp/nul.out.errors.jsonl" \
    || fail "trailing garbage line not refused: $(cat "$tmp/nul.out.errors.jsonl")"

# --output (or --errors) naming the input file, also through a symlink: usage error, input untouched
cp "$tmp/big.jsonl" "$tmp/same.jsonl"
ln -s "$tmp/same.jsonl" "$tmp/link.jsonl"
for out in "$tmp/same.jsonl" "$tmp/link.jsonl" "$tmp/../$(basename "$tmp")/same.jsonl"; do
    "$spex" batch --model "$m" --input "$tmp/same.jsonl" --output "$out" 2>"$tmp/same.log"
    rc=$?
    [ $rc -eq 2 ] || fail "--output $out = --input: exit $rc, want 2"
    grep -q "is the --input file" "$tmp/same.log" || fail "--output = --input message: $(cat "$tmp/same.log")"
done
"$spex" batch --model "$m" --input "$tmp/same.jsonl" --output "$tmp/other.jsonl" --errors "$tmp/link.jsonl" 2>/dev/null
[ $? -eq 2 ] || fail "--errors = --input: not exit 2"
cmp -s "$tmp/same.jsonl" "$tmp/big.jsonl" || fail "--output = --input: the input was changed"

# usage errors
"$spex" batch --model "$m" --input "$tmp/in.jsonl" 2>/dev/null; [ $? -eq 2 ] || fail "missing --output: not exit 2"
"$spex" batch --model "$m" --input "$tmp/nope.jsonl" --output "$tmp/x.jsonl" 2>/dev/null
[ $? -eq 1 ] || fail "missing input: not exit 1"

if [ $fails -ne 0 ]; then echo "$fails check(s) failed"; exit 1; fi
echo "batch: all checks passed ($kills SIGKILLs survived)"
