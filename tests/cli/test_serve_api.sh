#!/usr/bin/env bash
# test_serve_api.sh - the serving plumbing of issue 17 items 2 and 5, end to end with curl:
#   POST /tokenize (ids, with_pieces, add_special, errors) and /detokenize (round trip, errors);
#   /v1/models' max_model_len (the context length the server logs);
#   --cors-origin: CORS headers on answers (errors and streams too), OPTIONS preflight 204 before the API
#   key check; without it OPTIONS stays 405;
#   --tls-cert/--tls-key: HTTPS answers (when openssl is there to make a certificate);
#   generation_config.json: its temperature 0 makes a request without "temperature" greedy (= the explicit
#   greedy answer), its max_new_tokens is the default max_tokens, a request's own values win; an
#   eos_token_id list stops generation at any of its ids (with and without speculation, stop token not
#   in the text); --no-generation-config turns it off; `spex generate` and `spex batch` take the same
#   defaults with their command-line options winning; a bad file is an error naming file and field.
# Usage: test_serve_api.sh SPEX_BINARY TESTS_DATA_DIR
set -u
spex=$1
data=$(cd "$2" && pwd)
. "$(dirname "$0")/serve_lib.sh"
serve_test_init api
py() { /usr/bin/python3 "$@"; }
serve_models   # $tmp/tiny

# post URL BODY [curl args]: body to $tmp/body, status printed
post() {
    local url=$1 body=$2
    shift 2
    curl -s -X POST -H 'Content-Type: application/json' --data-binary "$body" -o "$tmp/body" -w '%{http_code}' "$@" "$url"
}
# check PYTHON_EXPR: evaluated with b = the JSON of $tmp/body
check() {
    py -c 'import json,sys; b=json.load(open(sys.argv[1])); assert eval(sys.argv[2]), b' "$tmp/body" "$1" 2>/dev/null ||
        fail "${2:-$1}: $(head -c 400 "$tmp/body")"
}

# ---------------------------------------------------------------- /tokenize, /detokenize, max_model_len
serve_start a --model "$tmp/tiny" --api-key sekret --cors-origin https://app.example
u=$a_url
auth=(-H 'Authorization: Bearer sekret')
text='It is a truth universally acknowledged, é!'
[ "$(post "$u/tokenize" "{\"content\":\"$text\"}" "${auth[@]}")" = 200 ] || fail "/tokenize status"
check 'isinstance(b["tokens"], list) and len(b["tokens"]) > 3 and all(isinstance(t, int) for t in b["tokens"])'
ids=$(py -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))["tokens"]))' "$tmp/body")
want=$(printf '%s\n' "\"$text\"" | "$spex" tokenize --model "$tmp/tiny")
[ "$ids" = "$(py -c 'import json,sys; print(json.dumps(json.loads(sys.argv[1])))' "$want")" ] ||
    fail "/tokenize ids $ids differ from spex tokenize's $want"
[ "$(post "$u/detokenize" "{\"tokens\":$ids}" "${auth[@]}")" = 200 ] || fail "/detokenize status"
check "b == {'content': '''$text'''}" "detokenize(tokenize(x)) == x"
post "$u/tokenize" "{\"content\":\"$text\",\"with_pieces\":true}" "${auth[@]}" >/dev/null
check "[t['id'] for t in b['tokens']] == $ids and all(isinstance(t['piece'], (str, list)) for t in b['tokens'])" \
    "with_pieces ids"
check "b''.join(t['piece'].encode() if isinstance(t['piece'], str) else bytes(t['piece']) for t in b['tokens']) == '''$text'''.encode()" \
    "with_pieces: the pieces' bytes are the text"
post "$u/tokenize" '{"content":"Hi","add_special":true}' "${auth[@]}" >/dev/null
bos=$(py -c 'import json,sys; print(json.load(open(sys.argv[1])).get("bos_token") or "")' "$tmp/tiny/tokenizer_config.json" 2>/dev/null)
add_bos=$(py -c 'import json,sys; print(bool(json.load(open(sys.argv[1])).get("add_bos_token")))' "$tmp/tiny/tokenizer_config.json" 2>/dev/null)
plain=$(printf '"Hi"\n' | "$spex" tokenize --model "$tmp/tiny")
withbos=$(printf '"Hi"\n' | "$spex" tokenize --model "$tmp/tiny" --bos 2>/dev/null || echo "$plain")
[ "$add_bos" = True ] && [ -n "$bos" ] && expect_ids=$withbos || expect_ids=$plain
check "b['tokens'] == $expect_ids" "add_special: the ids a completions prompt gets"
[ "$(post "$u/tokenize" '{"content":5}' "${auth[@]}")" = 400 ] || fail "/tokenize content 5: not 400"
check 'b["error"]["param"] == "content"'
[ "$(post "$u/tokenize" '{"content":"x","with_pieces":"yes"}' "${auth[@]}")" = 400 ] || fail "with_pieces string: not 400"
check 'b["error"]["param"] == "with_pieces"'
[ "$(post "$u/detokenize" '{"tokens":[1,99999]}' "${auth[@]}")" = 400 ] || fail "/detokenize bad id: not 400"
check 'b["error"]["param"] == "tokens"'
[ "$(post "$u/detokenize" '{"tokens":"1"}' "${auth[@]}")" = 400 ] || fail "/detokenize string: not 400"
[ "$(post "$u/tokenize" '{"content":"x"}')" = 401 ] || fail "/tokenize without the key: not 401"
[ "$(curl -s -o /dev/null -w '%{http_code}' "${auth[@]}" "$u/tokenize")" = 405 ] || fail "GET /tokenize: not 405"

ctx=$(sed -n 's/.*ready: context \([0-9]*\),.*/\1/p' "$tmp/a.log")
curl -s "${auth[@]}" -o "$tmp/body" "$u/v1/models"
check "b['data'][0]['max_model_len'] == int('$ctx') > 0" "/v1/models max_model_len = context $ctx"
curl -s "${auth[@]}" -o "$tmp/body" "$u/v1/models/tiny"
check "b['max_model_len'] == int('$ctx')" "/v1/models/tiny max_model_len"

# ---------------------------------------------------------------- CORS
curl -s -D "$tmp/h" -o /dev/null "${auth[@]}" "$u/v1/models"
grep -qi '^access-control-allow-origin: https://app.example' "$tmp/h" || fail "CORS header on GET: $(cat "$tmp/h")"
curl -s -D "$tmp/h" -o /dev/null "$u/v1/models"   # 401: browsers need the header on errors too
grep -qi '^access-control-allow-origin: https://app.example' "$tmp/h" || fail "CORS header on 401"
curl -s -N -D "$tmp/h" -o /dev/null "${auth[@]}" -H 'Content-Type: application/json' \
    --data-binary '{"prompt":"Hi","max_tokens":3,"stream":true}' "$u/v1/completions"
grep -qi '^access-control-allow-origin: https://app.example' "$tmp/h" || fail "CORS header on a stream"
st=$(curl -s -X OPTIONS -D "$tmp/h" -o /dev/null -w '%{http_code}' -H 'Origin: https://app.example' \
     -H 'Access-Control-Request-Method: POST' -H 'Access-Control-Request-Headers: authorization, content-type' \
     "$u/v1/chat/completions")
[ "$st" = 204 ] || fail "preflight status $st"
grep -qi '^access-control-allow-origin: https://app.example' "$tmp/h" || fail "preflight origin"
grep -qi '^access-control-allow-methods:.*POST' "$tmp/h" || fail "preflight methods"
grep -qi '^access-control-allow-headers: authorization, content-type' "$tmp/h" || fail "preflight headers"
kill "$a_pid"

serve_start b --model "$tmp/tiny"
[ "$(curl -s -X OPTIONS -o /dev/null -w '%{http_code}' "$b_url/v1/completions")" = 405 ] ||
    fail "OPTIONS without --cors-origin: not 405"
curl -s -D "$tmp/h" -o /dev/null "$b_url/health"
grep -qi '^access-control' "$tmp/h" && fail "CORS headers without --cors-origin"

# greedy references from the server without generation_config.json
prompt='"prompt":"It is a truth universally","return_tokens":true'
post "$b_url/v1/completions" "{$prompt,\"max_tokens\":20,\"temperature\":0}" >/dev/null
cp "$tmp/body" "$tmp/greedy.json"
kill "$b_pid"

# ---------------------------------------------------------------- TLS
if command -v openssl >/dev/null; then
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$tmp/key.pem" -out "$tmp/cert.pem" -days 2 -subj /CN=localhost \
        -addext "subjectAltName=IP:127.0.0.1" 2>/dev/null
    rm -f "$tmp/s.port"
    "$spex" serve --model "$tmp/tiny" --port 0 --port-file "$tmp/s.port" --tls-cert "$tmp/cert.pem" \
        --tls-key "$tmp/key.pem" 2>"$tmp/s.log" &
    pids+=($!)
    s_pid=$!
    for _ in $(seq 1 200); do [ -s "$tmp/s.port" ] && break; sleep 0.05; done
    su="https://127.0.0.1:$(cat "$tmp/s.port")"
    for _ in $(seq 1 200); do
        [ "$(curl -s --cacert "$tmp/cert.pem" -o /dev/null -w '%{http_code}' "$su/health")" = 200 ] && break
        sleep 0.05
    done
    [ "$(post "$su/v1/completions" "{$prompt,\"max_tokens\":20,\"temperature\":0}" --cacert "$tmp/cert.pem")" = 200 ] ||
        fail "HTTPS completion: $(cat "$tmp/s.log")"
    cmp -s <(py -c 'import json,sys; print(json.load(open(sys.argv[1]))["choices"][0]["tokens"])' "$tmp/body") \
           <(py -c 'import json,sys; print(json.load(open(sys.argv[1]))["choices"][0]["tokens"])' "$tmp/greedy.json") ||
        fail "HTTPS answer differs"
    kill "$s_pid"
    "$spex" serve --model "$tmp/tiny" --tls-cert "$tmp/cert.pem" 2>"$tmp/err"
    [ $? = 2 ] && grep -q -- '--tls-key' "$tmp/err" || fail "--tls-cert alone: $(cat "$tmp/err")"
else
    echo "SKIP: TLS (no openssl to make a certificate)"
fi

# ---------------------------------------------------------------- generation_config.json
# a model directory like tiny, with its own generation_config.json
mk_model() {  # mk_model NAME JSON
    mkdir -p "$tmp/$1"
    for f in "$tmp"/tiny/*; do ln -sf "$(readlink -f "$f")" "$tmp/$1/$(basename "$f")"; done
    printf '%s\n' "$2" >"$tmp/$1/generation_config.json"
}
gtoks=$(py -c 'import json,sys; print(json.load(open(sys.argv[1]))["choices"][0]["tokens"])' "$tmp/greedy.json")
# the first generated token not seen before it, at index k >= 2: an eos id that must stop right there
read -r k stop_id <<<"$(py -c '
import sys; t = eval(sys.argv[1])
k = next(i for i in range(2, len(t)) if t[i] not in t[:i]); print(k, t[k])' "$gtoks")"

mk_model g '{"temperature": 0, "top_p": 0.9, "max_new_tokens": 7, "do_sample": true, "bos_token_id": 0}'
serve_start g --model "$tmp/g" --spec-k 2
grep -q 'generation_config.json: temperature 0, top_p 0.9, max_new_tokens 7' "$tmp/g.log" ||
    fail "serve does not log what generation_config.json supplies: $(cat "$tmp/g.log")"
post "$g_url/v1/completions" "{$prompt,\"max_tokens\":20}" >/dev/null
check "b['choices'][0]['tokens'] == $gtoks" "generation_config temperature 0: the greedy answer"
post "$g_url/v1/completions" "{$prompt}" >/dev/null
check "b['usage']['completion_tokens'] == 7 and b['choices'][0]['tokens'] == $gtoks[:7]" "max_new_tokens 7 as the default"
post "$g_url/v1/chat/completions" '{"messages":[{"role":"user","content":"Hello"}]}' >/dev/null
check "b['usage']['completion_tokens'] <= 7" "chat: max_new_tokens as the default"
post "$g_url/v1/completions" "{$prompt,\"max_tokens\":20,\"temperature\":1.5,\"top_p\":1,\"seed\":11}" >/dev/null
cp "$tmp/body" "$tmp/own.json"
kill "$g_pid"
serve_start b2 --model "$tmp/tiny" --spec-k 2   # as g: a seed draws alike only at the same depth
post "$b2_url/v1/completions" "{$prompt,\"max_tokens\":20,\"temperature\":1.5,\"top_p\":1,\"seed\":11}" >/dev/null
check "b['choices'][0]['tokens'] == $(py -c 'import json,sys; print(json.load(open(sys.argv[1]))["choices"][0]["tokens"])' "$tmp/own.json")" \
    "a request's own temperature/top_p win over generation_config.json"
kill "$b2_pid"

serve_start n --model "$tmp/g" --no-generation-config
post "$n_url/v1/completions" "{$prompt,\"temperature\":0}" >/dev/null
check "b['choices'][0]['tokens'] == $gtoks[:16]" "--no-generation-config: OpenAI's default max_tokens 16"
grep -q 'generation_config' "$tmp/n.log" && fail "--no-generation-config still reads it: $(cat "$tmp/n.log")"
kill "$n_pid"

mk_model e "{\"temperature\": 0, \"eos_token_id\": [319, $stop_id]}"
serve_start e --model "$tmp/e"
for spec in 0 2; do
    post "$e_url/v1/completions" "{$prompt,\"max_tokens\":20,\"spec_k\":$spec}" >/dev/null
    check "b['choices'][0]['finish_reason'] == 'stop' and b['usage']['completion_tokens'] == $k + 1 and b['choices'][0]['tokens'] == $gtoks[:$k + 1]" \
        "eos_token_id list stops at token $stop_id (index $k), spec_k $spec"
    cp "$tmp/body" "$tmp/stopped.json"
    post "$e_url/detokenize" "{\"tokens\":$(py -c 'import sys; print(eval(sys.argv[1])[:int(sys.argv[2])])' "$gtoks" "$k")}" >/dev/null
    py -c 'import json,sys; assert json.load(open(sys.argv[1]))["choices"][0]["text"] == json.load(open(sys.argv[2]))["content"]' \
        "$tmp/stopped.json" "$tmp/body" || fail "eos stop: the text is not the text before the stop token"
done
kill "$e_pid"

# generate and batch read it too; their command-line options win
"$spex" generate --model "$tmp/e" --prompt "It is a truth universally" --json >"$tmp/gen.json" 2>/dev/null ||
    fail "generate with generation_config.json"
py -c 'import json,sys; g=json.load(open(sys.argv[1])); assert g["tokens"] == eval(sys.argv[2])[:int(sys.argv[3]) + 1] and g["stats"]["finish_reason"] == "stop", g' \
    "$tmp/gen.json" "$gtoks" "$k" || fail "generate: temperature 0 and the eos list from generation_config.json"
mk_model gh '{"temperature": 1.7, "max_new_tokens": 5}'
"$spex" generate --model "$tmp/gh" --prompt "It is a truth universally" --temperature 0 -n 20 --json >"$tmp/gen.json" 2>/dev/null
py -c 'import json,sys; g=json.load(open(sys.argv[1])); assert g["tokens"] == eval(sys.argv[2]), g' "$tmp/gen.json" "$gtoks" ||
    fail "generate: --temperature 0 and -n win over generation_config.json"
"$spex" generate --model "$tmp/g" --prompt "It is a truth universally" --json >"$tmp/gen.json" 2>/dev/null
py -c 'import json,sys; g=json.load(open(sys.argv[1])); assert len(g["tokens"]) == 7, g' "$tmp/gen.json" ||
    fail "generate: max_new_tokens as the default -n"
printf '{"id":1,"prompt":"It is a truth universally","max_tokens":20}\n' >"$tmp/in.jsonl"
"$spex" batch --model "$tmp/g" --input "$tmp/in.jsonl" --output "$tmp/out.jsonl" 2>/dev/null || fail "batch"
py -c 'import json,sys; o=json.loads(open(sys.argv[1]).readline()); assert o["tokens"] == eval(sys.argv[2]), o' \
    "$tmp/out.jsonl" "$gtoks" || fail "batch: generation_config.json temperature 0: $(cat "$tmp/out.jsonl")"

# bad files: errors naming the file and the field
for bad in '{"temperature": "hot"}' '{"eos_token_id": [1, "x"]}' '{"top_p": 0}' '{"max_new_tokens": 1.5}' '{"temperature": 0,'; do
    mk_model bad "$bad"
    "$spex" generate --model "$tmp/bad" --tokens 5,17 -n 2 >/dev/null 2>"$tmp/err"
    rc=$?
    field=$(py -c 'import re,sys; m=re.search(r"\"(\w+)\"", sys.argv[1]); print(m.group(1))' "$bad")
    [ "$rc" = 1 ] && grep -q 'generation_config.json' "$tmp/err" || fail "bad $bad: rc $rc: $(cat "$tmp/err")"
    case "$bad" in *,) ;; *) grep -q "'$field'" "$tmp/err" || fail "bad $bad: field not named: $(cat "$tmp/err")" ;; esac
done

[ "$fails" = 0 ] && echo "test_serve_api: all passed"
exit $((fails > 0))
