#!/usr/bin/env bash
# test_serve.sh - `spex serve` end to end with a real HTTP client (curl) on loopback.
#
# Models: the golden tiny-f32 checkpoint with tests/data/tiny-tokenizer next to
# it (fast: a whole 256-token context in ~30 ms), and a `spex synth` checkpoint
# with a 4096-token context for what needs a request to stay running for a
# while (429 when the queue is full, client disconnect, SIGTERM mid-request).
#
# Checks: /health, /v1/models, completions (text and token-id prompts; greedy
# tokens equal `spex generate`'s), chat, SSE streaming for both (chunk format,
# [DONE], streamed text == non-streamed text, usage chunk), error objects for
# 400 (bad JSON, wrong types, prompt too long, n > 1), 401, 404, 405, 413, 429,
# /metrics, `spex bench serve` (single requests, repeated rounds, waiting for a server still starting, and multi-turn
# chats with and without the prefix cache), 32 concurrent clients with greedy batch-invariance, a client that
# hangs up cancels its sequence (stream and non-stream), SIGTERM exits 0.
# Usage: test_serve.sh SPEX_BINARY TESTS_DATA_DIR
set -u
spex=$1
data=$(cd "$2" && pwd)
. "$(dirname "$0")/serve_lib.sh"
serve_test_init serve
py() { /usr/bin/python3 "$@"; }
serve_models   # $tmp/tiny (golden weights), $tmp/slow (random weights, ~1700 tokens/s here)

# req METHOD URL [BODY] [curl args...]: response body to $tmp/body, status printed
req() {
    local method=$1 url=$2 body=${3:-}
    shift 3 2>/dev/null || shift $#
    if [ -n "$body" ]; then
        curl -s -X "$method" -H 'Content-Type: application/json' --data-binary "$body" -o "$tmp/body" \
             -w '%{http_code}' "$@" "$url"
    else
        curl -s -X "$method" -o "$tmp/body" -w '%{http_code}' "$@" "$url"
    fi
}

# expect STATUS METHOD URL [BODY] [curl args...]
expect() {
    local want=$1
    shift
    local got
    got=$(req "$@")
    [ "$got" = "$want" ] || fail "$1 $2 ${3:-}: status $got, want $want: $(head -c 300 "$tmp/body")"
}

# expect_error STATUS TYPE PARAM_OR_NULL METHOD URL [BODY] [curl args...]: an OpenAI error object
expect_error() {
    local want=$1 type=$2 param=$3
    shift 3
    expect "$want" "$@"
    py - "$tmp/body" "$type" "$param" <<'PY' || fail "error body for $*: $(head -c 300 "$tmp/body")"
import json, sys
e = json.load(open(sys.argv[1]))["error"]
assert isinstance(e["message"], str) and e["message"], e
assert e["type"] == sys.argv[2], e
assert (e["param"] is None) if sys.argv[3] == "null" else e["param"] == sys.argv[3], e
assert set(e) == {"message", "type", "param", "code"}, e
PY
}

wait_metric() {  # wait_metric URL LINE: until /metrics has LINE (up to 10 s)
    for _ in $(seq 1 200); do
        curl -s "$1/metrics" | grep -qxF "$2" && return 0
        sleep 0.05
    done
    fail "/metrics never showed '$2'"
    return 1
}

# ---------------------------------------------------------------- the fast server
serve_start t --model "$tmp/tiny" --max-running 32 --max-queue 64 --max-body-bytes 4096 --max-prompt-tokens 64 \
    --spec-k 2 --grace 5
u=$t_url

expect 200 GET "$u/health"
py -c 'import json,sys; assert json.load(open(sys.argv[1])) == {"status": "ok"}' "$tmp/body" || fail "/health body"
expect 200 GET "$u/v1/models"
py -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["object"]=="list" and d["data"][0]["id"]=="tiny"' \
    "$tmp/body" || fail "/v1/models body: $(cat "$tmp/body")"
expect 200 GET "$u/v1/models/tiny"

# completions: token-id prompt, greedy, equals `spex generate`
"$spex" generate --model "$tmp/tiny" --tokens 5,17,42 -n 12 --json >"$tmp/gen.json" 2>/dev/null || fail "generate"
expect 200 POST "$u/v1/completions" \
    '{"model":"tiny","prompt":[5,17,42],"max_tokens":12,"temperature":0,"return_tokens":true,"unknown_field":{"x":1}}'
py - "$tmp/body" "$tmp/gen.json" <<'PY' || fail "completion body: $(cat "$tmp/body")"
import json, sys
r, g = (json.load(open(f)) for f in sys.argv[1:3])
assert r["object"] == "text_completion" and r["id"].startswith("cmpl-") and r["model"] == "tiny"
c = r["choices"][0]
assert c["index"] == 0 and c["tokens"] == g["tokens"], (c["tokens"], g["tokens"])
assert c["finish_reason"] == "length"
assert r["usage"] == {"prompt_tokens": 3, "completion_tokens": 12, "total_tokens": 15}, r["usage"]
PY

# completions: a text prompt, non-stream and stream give the same text
body='{"prompt":"It is a truth","max_tokens":40,"temperature":0}'
expect 200 POST "$u/v1/completions" "$body"
cp "$tmp/body" "$tmp/plain.json"
curl -s -N -H 'Content-Type: application/json' \
    --data-binary '{"prompt":"It is a truth","max_tokens":40,"temperature":0,"stream":true,"stream_options":{"include_usage":true}}' \
    -D "$tmp/headers" -o "$tmp/sse" "$u/v1/completions" || fail "stream curl"
grep -qi '^content-type: text/event-stream' "$tmp/headers" || fail "stream content type: $(cat "$tmp/headers")"
py - "$tmp/plain.json" "$tmp/sse" <<'PY' || fail "completion stream: $(head -c 600 "$tmp/sse")"
import json, sys
plain = json.load(open(sys.argv[1]))
raw = open(sys.argv[2]).read()
assert raw.endswith("data: [DONE]\n\n"), raw[-80:]
events = [e for e in raw.split("\n\n") if e]
assert all(e.startswith("data: ") for e in events)
chunks = [json.loads(e[6:]) for e in events[:-1]]
ids = {c["id"] for c in chunks}
assert len(ids) == 1 and all(c["object"] == "text_completion" for c in chunks)
text = "".join(c["choices"][0]["text"] for c in chunks if c["choices"])
assert text == plain["choices"][0]["text"], (text, plain["choices"][0]["text"])
fin = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
assert fin[-1] == plain["choices"][0]["finish_reason"] and all(f is None for f in fin[:-1]), fin
assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == plain["usage"], chunks[-1]
PY

# chat, non-stream and stream
chat='{"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":[{"type":"text","text":"Hello"}]}],"max_tokens":20,"temperature":0,"seed":3}'
expect 200 POST "$u/v1/chat/completions" "$chat"
cp "$tmp/body" "$tmp/chat.json"
curl -s -N -H 'Content-Type: application/json' --data-binary "${chat%\}},\"stream\":true}" -o "$tmp/chat.sse" \
    "$u/v1/chat/completions" || fail "chat stream curl"
py - "$tmp/chat.json" "$tmp/chat.sse" <<'PY' || fail "chat: $(cat "$tmp/chat.json") $(head -c 600 "$tmp/chat.sse")"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["object"] == "chat.completion" and r["id"].startswith("chatcmpl-")
m = r["choices"][0]["message"]
assert m["role"] == "assistant" and isinstance(m["content"], str)
assert r["usage"]["completion_tokens"] >= 1 and r["usage"]["prompt_tokens"] > 5
raw = open(sys.argv[2]).read()
assert raw.endswith("data: [DONE]\n\n")
chunks = [json.loads(e[6:]) for e in raw.split("\n\n") if e and e != "data: [DONE]"]
assert all(c["object"] == "chat.completion.chunk" for c in chunks)
assert chunks[0]["choices"][0]["delta"].get("role") == "assistant"
text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
assert text == m["content"], (text, m["content"])
assert chunks[-1]["choices"][0]["finish_reason"] == r["choices"][0]["finish_reason"]
PY

# stop strings (cut, finish_reason stop)
py - "$tmp/plain.json" >"$tmp/stop.json" <<'PY'
import json, sys
t = json.load(open(sys.argv[1]))["choices"][0]["text"]
w = next(t[i:i + 3] for i in range(1, len(t) - 3) if t[i:i + 3].isalpha())
print(json.dumps({"prompt": "It is a truth", "max_tokens": 40, "temperature": 0, "stop": [w], "_cut": t[:t.index(w)]}))
PY
expect 200 POST "$u/v1/completions" "$(cat "$tmp/stop.json")"
py - "$tmp/body" "$tmp/stop.json" <<'PY' || fail "stop string: $(cat "$tmp/body")"
import json, sys
r, s = (json.load(open(f)) for f in sys.argv[1:3])
assert r["choices"][0]["text"] == s["_cut"] and r["choices"][0]["finish_reason"] == "stop", (r, s["_cut"])
PY

# errors
expect_error 400 invalid_request_error null POST "$u/v1/completions" '{"prompt": "x", '
expect_error 400 invalid_request_error max_tokens POST "$u/v1/completions" '{"prompt":"x","max_tokens":"many"}'
expect_error 400 invalid_request_error temperature POST "$u/v1/completions" '{"prompt":"x","temperature":5}'
expect_error 400 invalid_request_error stream POST "$u/v1/completions" '{"prompt":"x","stream":"yes"}'
expect_error 400 invalid_request_error n POST "$u/v1/completions" '{"prompt":"x","n":129}'
expect_error 400 invalid_request_error prompt POST "$u/v1/completions" '{"max_tokens":3}'
expect_error 400 invalid_request_error prompt POST "$u/v1/completions" '{"prompt":[5,999]}'
expect_error 400 invalid_request_error messages POST "$u/v1/chat/completions" '{"messages":[{"role":"tool","content":"x"}]}'
long=$(py -c 'print("[" + ",".join(["7"] * 65) + "]")')
expect_error 400 invalid_request_error prompt POST "$u/v1/completions" "{\"prompt\":$long}"
grep -q "at most 64" "$tmp/body" || fail "prompt-too-long message: $(cat "$tmp/body")"
expect_error 400 invalid_request_error max_tokens POST "$u/v1/completions" '{"prompt":[5],"max_tokens":300}'
expect_error 404 invalid_request_error model POST "$u/v1/completions" '{"model":"gpt-4","prompt":"x"}'
expect_error 404 invalid_request_error null GET "$u/v1/nothing"
expect_error 404 invalid_request_error null GET "$u/etc/passwd"
expect_error 405 invalid_request_error null GET "$u/v1/completions"
grep -qi "^allow: POST" <(curl -s -D - -o /dev/null "$u/v1/completions") || fail "405 without Allow: POST"
expect_error 405 invalid_request_error null POST "$u/health" '{}'
big=$(py -c 'print("{\"prompt\":\"" + "a" * 5000 + "\"}")')
expect_error 413 invalid_request_error null POST "$u/v1/completions" "$big"
# chunked upload (no Content-Length): cut off at the limit too
expect_error 413 invalid_request_error null POST "$u/v1/completions" "$big" -H 'Transfer-Encoding: chunked'

# 32 concurrent clients: the greedy probe gives the same tokens alone and among 31 others
probe='{"prompt":[9,8,7,6,5],"max_tokens":48,"temperature":0,"return_tokens":true}'
expect 200 POST "$u/v1/completions" "$probe"
cp "$tmp/body" "$tmp/alone.json"
cpids=()
for i in $(seq 1 32); do
    if [ "$i" = 16 ]; then b=$probe
    elif [ $((i % 3)) = 0 ]; then b="{\"prompt\":\"Mr. Darcy $i\",\"max_tokens\":$((20 + i)),\"temperature\":0.9,\"seed\":$i,\"stream\":true}"
    else b="{\"prompt\":[$((i + 3)),$((i * 7 % 300 + 2)),11],\"max_tokens\":$((30 + i)),\"temperature\":0,\"spec_k\":$((i % 3))}"
    fi
    curl -s -N -H 'Content-Type: application/json' --data-binary "$b" -o "$tmp/c$i.out" -w '%{http_code}' \
        "$u/v1/completions" >"$tmp/c$i.code" &
    cpids+=($!)
done
for p in "${cpids[@]}"; do wait "$p"; done
for i in $(seq 1 32); do [ "$(cat "$tmp/c$i.code")" = 200 ] || fail "concurrent client $i: $(cat "$tmp/c$i.code")"; done
py - "$tmp/alone.json" "$tmp/c16.out" <<'PY' || fail "greedy result changed under batching"
import json, sys
a, b = (json.load(open(f))["choices"][0]["tokens"] for f in sys.argv[1:3])
assert a == b, (a, b)
PY
grep -q '^data: \[DONE\]' "$tmp/c3.out" || fail "a concurrent stream lacks [DONE]"

# /metrics: Prometheus text with the serving series
curl -s "$u/metrics" >"$tmp/metrics" || fail "metrics curl"
for want in 'spex_http_requests_total{model_name="tiny",endpoint="/v1/completions",status="200"}' \
    'spex_http_requests_total{model_name="tiny",endpoint="/v1/completions",status="413"} 2' \
    'spex_http_requests_total{model_name="tiny",endpoint="/v1/completions",status="400"}' \
    'spex_time_to_first_token_seconds_bucket{model_name="tiny",le="+Inf"}' \
    'spex_inter_token_latency_seconds_count{model_name="tiny"}' \
    'spex_request_prefill_seconds_count{model_name="tiny"}' 'spex_request_decode_seconds_bucket{model_name="tiny",le=' \
    'spex_request_prompt_tokens_sum{model_name="tiny"}' 'spex_request_generation_tokens_count{model_name="tiny"}' \
    'spex_queue_depth 0' 'spex_running_sequences 0' 'spex_kv_cache_capacity_tokens' \
    'spex_spec_accepted_total{position="2"}' 'spex_prompt_tokens_total' '# TYPE spex_generation_tokens_total counter'; do
    grep -qF "$want" "$tmp/metrics" || fail "/metrics lacks '$want'"
done
grep -q '^spex_wire_bytes_total\|^spex_expert_seconds_total\|^spex_worker_failed' "$tmp/metrics" \
    && fail "single process: /metrics has expert-parallel (wire) series"
# lint with Prometheus' own checker where it is installed (Debian: prometheus)
if command -v promtool >/dev/null; then
    promtool check metrics <"$tmp/metrics" >"$tmp/promtool.out" 2>&1 || fail "promtool: $(cat "$tmp/promtool.out")"
fi

# the load generator against this server: a table and a CSV row per (spec_k, clients)
"$spex" bench serve --port "${u##*:}" --concurrency 1,4 --spec 0,2 --requests 4 --max-tokens 8 --csv "$tmp/bench.csv" \
    >"$tmp/bench.out" 2>"$tmp/bench.err" || fail "bench serve exit $?: $(cat "$tmp/bench.err")"
grep -q '^| spec_k | clients | requests' "$tmp/bench.out" || fail "bench serve table: $(cat "$tmp/bench.out")"
py - "$tmp/bench.csv" <<'PY' || fail "bench serve csv: $(cat "$tmp/bench.csv")"
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
assert [(r["spec_k"], r["clients"]) for r in rows] == [("0", "1"), ("0", "4"), ("2", "1"), ("2", "4")], rows
assert all(r["errors"] == "0" and float(r["tokens_per_s"]) > 0 and float(r["ttft_p50_ms"]) > 0 for r in rows), rows
PY

# --rounds: every row R times, rows in turn; requests pooled, tokens/s the median of the rounds' within their range
"$spex" bench serve --port "${u##*:}" --concurrency 1 --spec 0,2 --requests 3 --max-tokens 8 --rounds 2 \
    --csv "$tmp/rounds.csv" >"$tmp/rounds.out" 2>"$tmp/rounds.err" || fail "bench serve --rounds exit $?: $(cat "$tmp/rounds.err")"
[ "$(grep -c '^spex bench serve: round 2 of 2: ' "$tmp/rounds.err")" = 2 ] || fail "bench serve --rounds log: $(cat "$tmp/rounds.err")"
py - "$tmp/rounds.csv" <<'PY' || fail "bench serve --rounds csv: $(cat "$tmp/rounds.csv")"
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
assert [(r["spec_k"], r["rounds"], r["requests"], r["errors"]) for r in rows] == [("0", "2", "6", "0"), ("2", "2", "6", "0")], rows
assert all(0 < float(r["tokens_per_s_min"]) <= float(r["tokens_per_s"]) <= float(r["tokens_per_s_max"]) for r in rows), rows
PY
"$spex" bench serve --port "${u##*:}" --turns 2 --rounds 2 >/dev/null 2>"$tmp/rounds2.err"
[ $? = 2 ] && grep -q -- "--rounds needs --turns 1" "$tmp/rounds2.err" || fail "bench serve --rounds with --turns: $(cat "$tmp/rounds2.err")"

# bench serve waits for the server (--wait): started first, against a port whose server comes up a second
# later, it waits (connection refused, then 503 while loading) and then runs the row without errors; with
# nothing listening it gives up after --wait seconds, naming the reason
wport=$(py -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$spex" bench serve --port "$wport" --wait 30 --concurrency 1 --spec 0 --requests 2 --max-tokens 4 \
    >"$tmp/wait.out" 2>"$tmp/wait.err" &
wbench=$!
sleep 1
serve_run serve --port "$wport" --model "$tmp/tiny" 2>"$tmp/wait_srv.log" &
wsrv=$!
pids+=("$wsrv")
wait "$wbench" || fail "bench serve --wait exit $?: $(cat "$tmp/wait.err")"
grep -q "waiting up to 30 s for 127.0.0.1:$wport" "$tmp/wait.err" || fail "bench serve --wait: $(cat "$tmp/wait.err")"
grep -q '^| 0 | 1 | 2 | 0 |' "$tmp/wait.out" || fail "bench serve --wait row: $(cat "$tmp/wait.out")"
kill -TERM "$wsrv"
wait "$wsrv"
"$spex" bench serve --port "$wport" --wait 1 --concurrency 1 --spec 0 --requests 1 >/dev/null 2>"$tmp/wait2.err"
[ $? = 1 ] && grep -q "127.0.0.1:$wport is not ready after 1 s (GET /health: cannot reach" "$tmp/wait2.err" ||
    fail "bench serve --wait 1 with no server: $(cat "$tmp/wait2.err")"

# multi-turn chats (--turns): TTFT of turn 1 and turn T, and the prefix cache hit rate from /metrics; the
# random 4096-context model, so three turns of the conversation fit; "off" when the server has no cache
bench_turns() {  # bench_turns NAME URL WANT_RATE(on|off)
    "$spex" bench serve --port "${2##*:}" --turns 3 --requests 2 --concurrency 1 --spec 0 --max-tokens 4 \
        --csv "$tmp/$1.csv" >"$tmp/$1.out" 2>"$tmp/$1.err" || fail "bench serve --turns exit $?: $(cat "$tmp/$1.err")"
    grep -q '^| spec_k | clients | chats | errors | tokens/s | turn 1 TTFT p50 ms .* turn 3 TTFT p50 ms .* prefix hit rate | hits/lookups |$' \
        "$tmp/$1.out" || fail "bench serve --turns table: $(cat "$tmp/$1.out")"
    py - "$tmp/$1.csv" "$3" <<'PY' || fail "bench serve --turns csv ($3): $(cat "$tmp/$1.csv")"
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
assert len(rows) == 1, rows
r = rows[0]
assert (r["chats"], r["turns"], r["errors"]) == ("2", "3", "0"), r
assert float(r["tokens_per_s"]) > 0 and float(r["ttft1_p50_ms"]) > 0 and float(r["ttft_last_p50_ms"]) > 0, r
assert float(r["ttft_last_over_first"]) > 0, r
if sys.argv[2] == "on":
    assert 0 < float(r["prefix_hit_rate"]) <= 1, r
    assert 0 < int(r["prefix_hits"]) <= int(r["prefix_lookups"]) == 6, r
else:
    assert (r["prefix_hit_rate"], r["prefix_hits"], r["prefix_lookups"]) == ("off", "off", "off"), r
PY
}
serve_start pc --model "$tmp/slow"
bench_turns turns_on "$pc_url" on
grep -q '| 0 | 1 | 2 | 0 | .* | 0\.[0-9]* | [0-9]*/6 |$' "$tmp/turns_on.out" || fail "bench serve --turns row: $(cat "$tmp/turns_on.out")"
kill -TERM "$pc_pid"
serve_start pn --model "$tmp/slow" --no-prefix-cache
bench_turns turns_off "$pn_url" off
grep -q '| off | - |$' "$tmp/turns_off.out" || fail "bench serve --turns without cache: $(cat "$tmp/turns_off.out")"
kill -TERM "$pn_pid"
wait "$pc_pid" "$pn_pid"

# SIGTERM while idle: exit 0
kill -TERM "$t_pid"
wait "$t_pid"
rc=$?
[ $rc -eq 0 ] || fail "serve exit $rc after SIGTERM: $(tail -5 "$tmp/t.log")"

# ---------------------------------------------------------------- API key
serve_start k --model "$tmp/tiny" --api-key s3cret
expect 200 GET "$k_url/health"
expect_error 401 invalid_request_error null GET "$k_url/v1/models"
expect_error 401 invalid_request_error null GET "$k_url/v1/models" "" -H 'Authorization: Bearer wrong'
expect_error 401 invalid_request_error null POST "$k_url/v1/completions" '{"prompt":[5],"max_tokens":2}'
expect 200 GET "$k_url/v1/models" "" -H 'Authorization: Bearer s3cret'
expect 200 POST "$k_url/v1/completions" '{"prompt":[5],"max_tokens":2}' -H 'Authorization: Bearer s3cret'
kill -TERM "$k_pid"
wait "$k_pid" || fail "api-key server exit $?"

# ---------------------------------------------------------------- the slow server: 429, disconnects, SIGTERM
serve_start s --model "$tmp/slow" --max-running 1 --max-queue 0 --spec-k 0 --grace 0.5
u=$s_url
long_body='{"prompt":[5,6,7],"max_tokens":4000,"temperature":0,"stream":true}'
curl -s -N -H 'Content-Type: application/json' --data-binary "$long_body" -o "$tmp/long.sse" "$u/v1/completions" &
cpid=$!
pids+=("$cpid")
wait_metric "$u" "spex_running_sequences 1"
expect_error 429 rate_limit_error null POST "$u/v1/completions" '{"prompt":[5],"max_tokens":2}'
kill "$cpid"   # the client hangs up mid-stream: its sequence is cancelled and freed
wait_metric "$u" 'spex_requests_finished_total{model_name="slow",finish_reason="cancelled"} 1'
wait_metric "$u" "spex_running_sequences 0"
wait_metric "$u" "spex_kv_cache_reserved_tokens 0"
grep -q 'client went away, request cancelled' "$tmp/s.log" || fail "the hang-up is not logged: $(cat "$tmp/s.log")"
grep -q 'internal error' "$tmp/s.log" && fail "a client hang-up is logged as an internal error"
# a non-streaming client that gives up (curl --max-time) cancels too
curl -s --max-time 0.5 -H 'Content-Type: application/json' -o /dev/null \
    --data-binary '{"prompt":[5,6,7],"max_tokens":4000,"temperature":0}' "$u/v1/completions"
wait_metric "$u" 'spex_requests_finished_total{model_name="slow",finish_reason="cancelled"} 2'
wait_metric "$u" "spex_running_sequences 0"
# both hang-ups count as 499 (nginx's "client closed request"), the stream too, not as 200
grep -qF 'spex_http_requests_total{model_name="slow",endpoint="/v1/completions",status="499"} 2' \
    <(curl -s "$u/metrics") || fail "the abandoned requests are not counted as 499: $(curl -s "$u/metrics" | grep 499)"
curl -s "$u/metrics" | grep -q 'endpoint="/v1/completions",status="200"' \
    && fail "the abandoned stream is counted as 200"

# SIGTERM mid-request: the stream ends with a shutdown error and [DONE], the server exits 0 within the grace period
curl -s -N -H 'Content-Type: application/json' --data-binary "$long_body" -o "$tmp/term.sse" "$u/v1/completions" &
cpid=$!
wait_metric "$u" "spex_running_sequences 1"
t0=$(date +%s.%N)
kill -TERM "$s_pid"
wait "$s_pid"
rc=$?
[ $rc -eq 0 ] || fail "serve exit $rc after SIGTERM with a running request: $(tail -5 "$tmp/s.log")"
py -c "import sys; assert float(sys.argv[2]) - float(sys.argv[1]) < 5" "$t0" "$(date +%s.%N)" || fail "SIGTERM took too long"
wait "$cpid"
tail -c 300 "$tmp/term.sse" | grep -q 'shutting_down' || fail "stream lacks the shutdown error: $(tail -c 300 "$tmp/term.sse")"
tail -c 20 "$tmp/term.sse" | grep -q '^data: \[DONE\]' || fail "stream lacks [DONE] after shutdown"
grep -q "shutting down" "$tmp/s.log" || fail "no shutdown log line"

if [ $fails -ne 0 ]; then echo "$fails check(s) failed"; exit 1; fi
echo "serve: all checks passed"
