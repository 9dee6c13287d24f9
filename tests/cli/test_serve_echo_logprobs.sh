#!/usr/bin/env bash
# test_serve_echo_logprobs.sh - /v1/completions with echo and logprobs on the shipped model, against an
# independent reference: the prompt tokens' token_logprobs and top_logprobs must be log_softmax of the
# logits of tests/ref/deepseek_ref.py (a plain float64 numpy forward with its own FP8 reading) at every
# prompt position, within 1e-4 (the engine runs f32; its logprobs agree with the reference to ~4e-6 on this
# model). Streaming and non-streaming must give the same prompt logprobs (the stream's echo chunk carries
# them, text_offset from 0), and the answer must be the same whether the prompt was cached before or not
# (a server with and without --no-prefix-cache; the first request puts the prompt in the cache).
# Scoring a prompt (lm-eval-harness's request: echo, logprobs, max_tokens 0) answers with exactly the
# prompt, finish_reason "length", usage completion_tokens 0 and the prompt tokens' logprobs only, equal to
# those of the same request with max_tokens 1, streamed or not; max_tokens 0 without echo and negative
# max_tokens are a 400 naming the field.
# Usage: test_serve_echo_logprobs.sh SPEX_BINARY TESTS_DATA_DIR
set -u
spex=$1
data=$(cd "$2" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
model=$repo/models/austen-moe
py=/usr/bin/python3
. "$here/serve_lib.sh"
serve_test_init echo-lp
"$py" -c 'import numpy' 2>/dev/null || { echo "FAIL: $py cannot import numpy (scripts/setup.sh installs it)"; exit 1; }

# "It is a truth universally acknowledged, that a single man in possession" with BOS, as ids
ids="0,2487,84,1243,295,270,1169,283,885,475,578,273,15,29,173,123,252,54,879,173,123,252,31,56,1037"
"$py" "$repo/tests/ref/deepseek_ref.py" "$model" --tokens "$ids" >"$tmp/ref.json" || fail "reference forward"

post() {   # URL BODY OUT
    curl -s -o "$3" -w '%{http_code}' "$1/v1/completions" -H 'Content-Type: application/json' -d "$2"
}
for mode in cache nocache; do
    args=()
    [ "$mode" = nocache ] && args=(--no-prefix-cache)
    serve_start "$mode" --model "$model" "${args[@]}"
    url=$(eval echo "\${${mode}_url}")
    plain="{\"prompt\":[$ids],\"max_tokens\":8,\"temperature\":0}"
    [ "$(post "$url" "$plain" "$tmp/$mode.plain.json")" = 200 ] || fail "$mode: plain request: $(cat "$tmp/$mode.plain.json")"
    body="{\"prompt\":[$ids],\"max_tokens\":8,\"temperature\":0,\"echo\":true,\"logprobs\":3"
    [ "$(post "$url" "$body}" "$tmp/$mode.json")" = 200 ] || fail "$mode: echo + logprobs: $(cat "$tmp/$mode.json")"
    [ "$(post "$url" "$body,\"stream\":true}" "$tmp/$mode.sse")" = 200 ] ||
        fail "$mode: streamed echo + logprobs: $(cat "$tmp/$mode.sse")"
    for mt in 0 1; do   # scoring the prompt: no new token, and the same prompt part with one
        score="{\"prompt\":[$ids],\"max_tokens\":$mt,\"temperature\":0,\"echo\":true,\"logprobs\":2"
        [ "$(post "$url" "$score}" "$tmp/$mode.score$mt.json")" = 200 ] ||
            fail "$mode: max_tokens $mt: $(cat "$tmp/$mode.score$mt.json")"
        [ "$(post "$url" "$score,\"stream\":true,\"stream_options\":{\"include_usage\":true}}" \
            "$tmp/$mode.score$mt.sse")" = 200 ] || fail "$mode: streamed max_tokens $mt: $(cat "$tmp/$mode.score$mt.sse")"
    done
    for bad in '"max_tokens":0' '"max_tokens":-1,"echo":true' '"max_tokens":0,"echo":false,"logprobs":1'; do
        code=$(post "$url" "{\"prompt\":[$ids],$bad}" "$tmp/bad.json")
        [ "$code" = 400 ] && grep -q '"param":"max_tokens"' "$tmp/bad.json" ||
            fail "$mode: {$bad}: HTTP $code $(cat "$tmp/bad.json")"
    done
    kill "$(eval echo "\${${mode}_pid}")"
done

"$py" - "$tmp" "$ids" <<'PY' || fail "echo logprobs against the reference"
import json, math, sys
import numpy as np
tmp, ids = sys.argv[1], [int(x) for x in sys.argv[2].split(",")]
n, tol, bad = len(ids), 1e-4, []
ref = np.array(json.load(open(f"{tmp}/ref.json"))["logits"], dtype=np.float64)
lsm = ref - ref.max(axis=1, keepdims=True)
lsm -= np.log(np.exp(lsm).sum(axis=1, keepdims=True))

def sse(path):
    chunks = [json.loads(l[6:]) for l in open(path).read().split("\n") if l.startswith("data: {")]
    return [c["choices"][0] for c in chunks if c.get("choices")]

for mode in ("cache", "nocache"):
    full = json.load(open(f"{tmp}/{mode}.json"))["choices"][0]
    plain = json.load(open(f"{tmp}/{mode}.plain.json"))["choices"][0]
    lp = full["logprobs"]
    if not full["text"].endswith(plain["text"]):
        bad.append(f"{mode}: the echoed answer {full['text']!r} does not end with the plain answer {plain['text']!r}")
    if len(lp["tokens"]) != n + 8 or lp["token_logprobs"][0] is not None or lp["top_logprobs"][0] is not None:
        bad.append(f"{mode}: {len(lp['tokens'])} tokens (want {n} + 8), first logprob {lp['token_logprobs'][0]}")
    worst = 0.0
    for t in range(1, n):
        want = lsm[t - 1, ids[t]]
        worst = max(worst, abs(lp["token_logprobs"][t] - want))
        top = sorted(lp["top_logprobs"][t].values(), reverse=True)
        ref_top = sorted(lsm[t - 1], reverse=True)[:len(top)]
        if len(top) != 3 or max(abs(a - b) for a, b in zip(top, ref_top)) > tol:
            bad.append(f"{mode}: position {t}: top_logprobs {top} vs reference {ref_top}")
    if worst > tol:
        bad.append(f"{mode}: prompt token_logprobs differ from the reference by up to {worst:.2e}")
    print(f"{mode}: {n - 1} prompt logprobs, max |spex - reference| = {worst:.2e}")
    offs = lp["text_offset"]
    echo_len = len(full["text"].encode()) - len(plain["text"].encode())
    if offs[0] != 0 or offs != sorted(offs) or offs[n] != echo_len:
        bad.append(f"{mode}: text_offset {offs} (the echo is {echo_len} bytes)")
    # the stream: its first chunk echoes the prompt with the same logprobs, then the answer follows
    ch = sse(f"{tmp}/{mode}.sse")
    first = ch[0]["logprobs"]
    for key in ("tokens", "token_logprobs", "top_logprobs", "text_offset"):
        if first[key] != lp[key][:n]:
            bad.append(f"{mode}: streamed echo chunk's {key} differs from the non-streamed prompt part")
    if "".join(c["text"] for c in ch) != full["text"]:
        bad.append(f"{mode}: streamed text differs")
    rest = [x for c in ch[1:] if c["logprobs"] for x in c["logprobs"]["token_logprobs"]]
    if rest != lp["token_logprobs"][n:]:
        bad.append(f"{mode}: streamed completion logprobs differ")
    # scoring: max_tokens 0 is the prompt alone, with the prompt logprobs of max_tokens 1
    z, o = (json.load(open(f"{tmp}/{mode}.score{mt}.json")) for mt in (0, 1))
    zc, oc = z["choices"][0], o["choices"][0]
    echo_text = oc["text"].encode()[:oc["logprobs"]["text_offset"][n]].decode()   # offsets count bytes
    if zc["text"] != echo_text or not full["text"].startswith(zc["text"]):
        bad.append(f"{mode}: max_tokens 0 text {zc['text']!r} is not the prompt {echo_text!r}")
    if zc["finish_reason"] != "length" or z["usage"]["completion_tokens"] != 0 or z["usage"]["prompt_tokens"] != n:
        bad.append(f"{mode}: max_tokens 0: finish_reason {zc['finish_reason']}, usage {z['usage']}")
    zl, ol = zc["logprobs"], oc["logprobs"]
    if len(zl["tokens"]) != n or zl["token_logprobs"][0] is not None:
        bad.append(f"{mode}: max_tokens 0: {len(zl['tokens'])} logprob entries (want the {n} prompt tokens)")
    for key in ("tokens", "token_logprobs", "top_logprobs", "text_offset"):
        if zl[key] != ol[key][:n]:
            bad.append(f"{mode}: max_tokens 0's {key} differ from max_tokens 1's prompt part")
    zs, os_ = sse(f"{tmp}/{mode}.score0.sse"), sse(f"{tmp}/{mode}.score1.sse")
    if "".join(c["text"] for c in zs) != zc["text"] or zs[0]["logprobs"] != zl or zs[-1]["finish_reason"] != "length":
        bad.append(f"{mode}: streamed max_tokens 0 differs from the non-streamed answer: {zs}")
    if os_[0]["logprobs"] != zl:
        bad.append(f"{mode}: streamed max_tokens 1's echo chunk differs from max_tokens 0's prompt logprobs")
    usage = [json.loads(l[6:]) for l in open(f"{tmp}/{mode}.score0.sse").read().split("\n")
             if l.startswith("data: {")][-1].get("usage")
    if not usage or usage["completion_tokens"] != 0:
        bad.append(f"{mode}: streamed max_tokens 0 usage {usage}")
    print(f"{mode}: max_tokens 0 scores {n} prompt tokens, equal to max_tokens 1's prompt part, streamed too")
a, b = (json.load(open(f"{tmp}/{m}.json"))["choices"][0] for m in ("cache", "nocache"))
if a != b:
    bad.append("the prefix cache changed the answer")
for m in bad: print("FAIL:", m)
sys.exit(1 if bad else 0)
PY
[ "$fails" -eq 0 ] && echo "ok" && exit 0
exit 1
