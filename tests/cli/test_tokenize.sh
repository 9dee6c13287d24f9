#!/usr/bin/env bash
# test_tokenize.sh - `spex tokenize` / `spex detokenize` end to end on
# DeepSeek-V3's tokenizer: the reference ids from Hugging Face, round trips,
# --bos, --model as a file, and bad input (line number on stderr, exit 1).
# usage: test_tokenize.sh PATH/TO/spex PATH/TO/tests/data
set -u
SPEX=$1
DATA=$2/deepseek-v3-tokenizer
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
passed=0
failed=0

check() { # check NAME COMMAND...: run, count pass/fail
    local name=$1
    shift
    if "$@"; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        echo "FAIL: $name"
    fi
}

# Reference ids (no BOS), with --model as a directory and as a file.
"$SPEX" tokenize --model "$DATA" <"$DATA/cases.jsonl" >"$TMP/ids" 2>"$TMP/err"
check "tokenize exit code" test $? -eq 0
check "tokenize matches Hugging Face" diff "$TMP/ids" "$DATA/cases.ids.jsonl"
"$SPEX" tokenize --model "$DATA/tokenizer.json" <"$DATA/cases.jsonl" >"$TMP/ids_file"
check "--model tokenizer.json" diff "$TMP/ids_file" "$DATA/cases.ids.jsonl"

# Round trip: ids -> text -> ids, and the text equals the input strings.
"$SPEX" detokenize --model "$DATA" <"$DATA/cases.ids.jsonl" >"$TMP/text"
check "detokenize exit code" test $? -eq 0
check "detokenize gives the input strings" diff "$TMP/text" "$DATA/cases.jsonl"
"$SPEX" tokenize --model "$DATA" <"$TMP/text" >"$TMP/ids2"
check "round trip ids" diff "$TMP/ids2" "$DATA/cases.ids.jsonl"

# --bos prepends id 0; special tokens in the text are cut out.
out=$(printf '"hi"\n' | "$SPEX" tokenize --model "$DATA" --bos)
check "--bos" test "$out" = "[0,6366]"
out=$(printf '"<｜begin▁of▁sentence｜>hi<｜end▁of▁sentence｜>"\n' | "$SPEX" tokenize --model "$DATA")
check "special tokens" test "$out" = "[0,6366,1]"
out=$(printf '[0,6366,1]\n' | "$SPEX" detokenize --model "$DATA" --skip-special)
check "--skip-special" test "$out" = '"hi"'
out=$(printf '[1]\n' | "$SPEX" detokenize --model "$DATA")
check "special token text" test "$out" = '"<｜end▁of▁sentence｜>"'

# A bad line stops the run: earlier lines are printed, the bad one is not.
printf '"ok"\nnot json\n"never"\n' | "$SPEX" tokenize --model "$DATA" >"$TMP/out" 2>"$TMP/err"
check "tokenize bad line exit 1" test $? -eq 1
check "tokenize bad line number" grep -q "line 2" "$TMP/err"
check "tokenize output before bad line" test "$(wc -l <"$TMP/out")" -eq 1
printf '[19923]\n[1, 2]\n[1,999999]\n' | "$SPEX" detokenize --model "$DATA" >"$TMP/out" 2>"$TMP/err"
check "detokenize bad id exit 1" test $? -eq 1
check "detokenize bad id line number" grep -q "line 3.*999999" "$TMP/err"
check "detokenize output before bad line" test "$(wc -l <"$TMP/out")" -eq 2
printf '[1]\n["a"]\n' | "$SPEX" detokenize --model "$DATA" >/dev/null 2>"$TMP/err"
check "detokenize non-integer exit 1" test $? -eq 1
check "detokenize non-integer message" grep -q "line 2" "$TMP/err"
printf '"a" "b"\n' | "$SPEX" tokenize --model "$DATA" >/dev/null 2>"$TMP/err"
check "trailing garbage exit 1" test $? -eq 1

# NUL inside strings (issue 16 item 4): "\u0000" and a raw NUL byte are encoded like any other
# character, as Hugging Face does: the gap between the pre-tokenizer's matches is its own piece,
# byte-level 0x00 is "\u0100" (id 191), so "hello\u0000 world" = ids("hello") + [191] + ids(" world").
printf '"hello"\n" world"\n"hello\\u0000 world"\n"hello\000 world"\n"\\u0000"\n' \
    | "$SPEX" tokenize --model "$DATA" >"$TMP/nul" 2>"$TMP/err"
check "NUL lines exit 0" test $? -eq 0
want_nul=$(/usr/bin/python3 -c '
import json, sys
a, b = (json.loads(l) for l in open(sys.argv[1]).read().split("\n")[:2])
print(json.dumps(a + [191] + b, separators=(",", ":")))' "$TMP/nul")
check "\\u0000 encoded as a byte" test "$(sed -n 3p "$TMP/nul")" = "$want_nul"
check "raw NUL byte encoded as a byte" test "$(sed -n 4p "$TMP/nul")" = "$want_nul"
check "lone NUL is id 191" test "$(sed -n 5p "$TMP/nul")" = "[191]"
printf '[191,191]\n' | "$SPEX" detokenize --model "$DATA" >"$TMP/out"
check "NUL decodes back" test "$(cat "$TMP/out")" = '"\u0000\u0000"'

# 10 MB of spaces tokenize (issue 16 item 7: Oniguruma's retry-limit-in-match used to refuse them);
# \s+(?!\S) makes the whole run one piece, which BPE cuts into the longest space token.
/usr/bin/python3 -c 'import json; print(json.dumps(" " * (10 << 20)))' >"$TMP/spaces"
"$SPEX" tokenize --model "$DATA" <"$TMP/spaces" >"$TMP/out" 2>"$TMP/err"
check "10 MB of spaces exit 0" test $? -eq 0
check "10 MB of spaces ids" /usr/bin/python3 -c '
import json, sys
ids = json.load(open(sys.argv[1]))
sys.exit(0 if len(ids) == 81920 and set(ids) == {69933} else 1)' "$TMP/out"

# Usage and load errors.
"$SPEX" tokenize --help >"$TMP/out"
check "--help exit 0" test $? -eq 0
check "--help usage" grep -q "usage: spex tokenize" "$TMP/out"
"$SPEX" detokenize --help | grep -q "usage: spex detokenize"
check "detokenize --help" test $? -eq 0
"$SPEX" tokenize </dev/null 2>/dev/null
check "missing --model exit 2" test $? -eq 2
"$SPEX" tokenize --model "$DATA" --frobnicate </dev/null 2>/dev/null
check "unknown option exit 2" test $? -eq 2
"$SPEX" tokenize --model "$TMP/nope" </dev/null 2>"$TMP/err"
check "missing model exit 1" test $? -eq 1
check "missing model message" grep -q "$TMP/nope" "$TMP/err"

echo "$passed passed, $failed failed"
test "$failed" -eq 0
