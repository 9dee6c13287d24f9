#!/usr/bin/env bash
# test_chat_template.sh - the model's chat template, end to end (docs/serving.md#chat-templates):
#   - the shipped model (models/austen-moe, DeepSeek-V3's template) renders, through the interpreter,
#     exactly the prompts the built-in format gives, for several message lists;
#   - `spex batch` on a model whose tokenizer_config.json holds a ChatML template tokenizes the
#     ChatML prompt (usage.prompt_tokens = the tokens of `spex chat-template`'s output), and
#     --chat-template builtin gives the DeepSeek prompt instead;
#   - a template the interpreter cannot run stops serve and batch at startup with the construct and its
#     line:column (exit 1, before the model loads), and --chat-template builtin is the explicit way out;
#   - `spex chat-template` reports errors of the template itself (raise_exception) and usage errors;
#   - `spex serve` with Mistral's template: /v1/chat/completions renders it (prompt_tokens = the tokens of
#     the rendered prompt), and a conversation it refuses is a 400 carrying the template's own message.
# Usage: test_chat_template.sh SPEX_BINARY TESTS_DATA_DIR
set -u
spex=$1
data=$(cd "$2" && pwd)
shipped=$(cd "$data/../../models/austen-moe" && pwd)
. "$(dirname "$0")/serve_lib.sh"
serve_test_init chat-template

# 1. the shipped model: its template through the interpreter == the built-in format
i=0
for msgs in '[{"role":"user","content":"Who is Mr. Darcy?"}]' \
            '[{"role":"system","content":"Answer in the manner of Jane Austen."},{"role":"user","content":"Hi"},{"role":"assistant","content":"Good day."},{"role":"user","content":"What happened next?"}]' \
            '[{"role":"user","content":"a"},{"role":"system","content":"S1"},{"role":"assistant","content":"b"},{"role":"system","content":"S2"}]' \
            '[{"role":"system","content":""},{"role":"user","content":"nul\u0000byte and \n newline"}]'; do
    i=$((i + 1))
    printf '%s' "$msgs" >"$tmp/m$i.json"
    for gen in "" --no-generation-prompt; do
        "$spex" chat-template --model "$shipped" --messages "$tmp/m$i.json" $gen >"$tmp/t$i" || fail "shipped model: case $i did not render"
        "$spex" chat-template --model "$shipped" --chat-template builtin --messages "$tmp/m$i.json" $gen >"$tmp/b$i" || fail "builtin: case $i"
        cmp -s "$tmp/t$i" "$tmp/b$i" || fail "shipped model: case $i $gen: template and built-in prompts differ"
    done
done
"$spex" chat-template --model "$shipped" --check | grep -q "tokenizer_config.json: chat_template" \
    || fail "--check does not name tokenizer_config.json's template"

# a model directory (the golden tiny checkpoint) whose tokenizer_config.json holds TEMPLATE
model_with() {   # model_with DIR TEMPLATE_FILE
    mkdir -p "$1"
    for f in config.json model.safetensors; do ln -sf "$data/golden/tiny-f32/$f" "$1/$f"; done
    ln -sf "$data/tiny-tokenizer/tokenizer.json" "$1/tokenizer.json"
    /usr/bin/python3 - "$data/tiny-tokenizer/tokenizer_config.json" "$2" >"$1/tokenizer_config.json" <<'PY'
import json, sys
cfg = json.load(open(sys.argv[1], encoding="utf-8"))
cfg["chat_template"] = open(sys.argv[2], encoding="utf-8").read()
print(json.dumps(cfg, ensure_ascii=False))
PY
}

# 2. batch renders a ChatML template (and the built-in format when asked)
model_with "$tmp/chatml" "$data/templates/chatml.jinja"
line='{"id": 1, "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Describe Bath."}], "max_tokens": 2, "temperature": 0}'
printf '%s\n' "$line" >"$tmp/in.jsonl"
printf '%s' '[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Describe Bath."}]' >"$tmp/bath.json"
for choice in auto builtin; do
    rm -f "$tmp/out.jsonl" "$tmp/out.jsonl.errors.jsonl"
    "$spex" batch --model "$tmp/chatml" --chat-template "$choice" --input "$tmp/in.jsonl" --output "$tmp/out.jsonl" \
        2>"$tmp/batch.err" || { fail "batch --chat-template $choice failed: $(tail -2 "$tmp/batch.err")"; continue; }
    "$spex" chat-template --model "$tmp/chatml" --chat-template "$choice" --messages "$tmp/bath.json" >"$tmp/prompt"
    want=$(/usr/bin/python3 -c 'import json,sys; print(json.dumps(open(sys.argv[1], encoding="utf-8").read()))' "$tmp/prompt" \
           | "$spex" tokenize --model "$tmp/chatml" | /usr/bin/python3 -c 'import json,sys; print(len(json.loads(sys.stdin.read())))')
    got=$(/usr/bin/python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["usage"]["prompt_tokens"])' "$tmp/out.jsonl")
    [ "$got" = "$want" ] || fail "batch --chat-template $choice: prompt_tokens $got, the rendered prompt has $want tokens"
    case $choice in
        auto) grep -q "im_start" "$tmp/prompt" || fail "auto did not pick the ChatML template";;
        builtin) grep -q "User" "$tmp/prompt" || fail "builtin did not give the DeepSeek format";;
    esac
    grep -q "chat format:" "$tmp/batch.err" || fail "batch does not log its chat format"
done

# 3. an unsupported template is a startup error naming the construct; builtin is the way out
printf 'line one\n{{ messages[0].content | frobnicate }}\n' >"$tmp/bad.jinja"
model_with "$tmp/bad" "$tmp/bad.jinja"
timeout 60 "$spex" serve --model "$tmp/bad" --port 0 >/dev/null 2>"$tmp/serve.err"
rc=$?
[ $rc -eq 1 ] || fail "serve with an unsupported template: exit $rc, want 1"
grep -q "2:26: unsupported filter 'frobnicate'" "$tmp/serve.err" || fail "serve error does not name the filter and position: $(cat "$tmp/serve.err")"
grep -q "tokenizer_config.json: chat_template" "$tmp/serve.err" || fail "serve error does not name the file"
rm -f "$tmp/out.jsonl"
"$spex" batch --model "$tmp/bad" --input "$tmp/in.jsonl" --output "$tmp/out.jsonl" 2>"$tmp/batch.err"
[ $? -eq 1 ] && grep -q "unsupported filter 'frobnicate'" "$tmp/batch.err" || fail "batch does not refuse the template: $(cat "$tmp/batch.err")"
"$spex" batch --model "$tmp/bad" --chat-template builtin --input "$tmp/in.jsonl" --output "$tmp/out.jsonl" 2>/dev/null \
    && [ -s "$tmp/out.jsonl" ] || fail "batch --chat-template builtin does not run past the bad template"
for construct in '{% macro m() %}{% endmacro %}:1:4: unsupported statement '"'"'macro'"'" \
                 '{{ x is frob }}:1:9: unsupported test '"'"'frob'"'" \
                 '{{ "a".frob() }}:1:8: unsupported method '"'"'frob'"'" \
                 '{{ cycler(1) }}:1:4: unsupported function '"'"'cycler'"'" \
                 '{% if x %}:1:11: unexpected end of template: missing {% endif %}'; do
    printf '%s' "${construct%%:*}" >"$tmp/c.jinja"
    want=${construct#*:}
    "$spex" chat-template --chat-template "$tmp/c.jinja" --messages "$tmp/bath.json" >/dev/null 2>"$tmp/c.err"
    [ $? -eq 1 ] && grep -qF -- "$want" "$tmp/c.err" || fail "template '${construct%%:*}': want '$want', got: $(cat "$tmp/c.err")"
done

# 4. the template's own refusal, and usage errors
printf '%s' '{% if messages[0].role != "user" %}{{ raise_exception("first message must be the user'"'"'s") }}{% endif %}ok' >"$tmp/raise.jinja"
"$spex" chat-template --chat-template "$tmp/raise.jinja" --messages "$tmp/bath.json" >/dev/null 2>"$tmp/r.err"
[ $? -eq 1 ] && grep -q "raise_exception: first message must be the user's" "$tmp/r.err" || fail "raise_exception not reported: $(cat "$tmp/r.err")"
"$spex" chat-template --messages "$tmp/bath.json" >/dev/null 2>&1
[ $? -eq 2 ] || fail "chat-template without --model or --chat-template is not a usage error"
"$spex" chat-template --chat-template "$tmp/missing.jinja" --messages "$tmp/bath.json" >/dev/null 2>"$tmp/m.err"
[ $? -eq 1 ] && grep -q "missing.jinja" "$tmp/m.err" || fail "a missing template file is not named"

# 5. serve: the template is what /v1/chat/completions renders, and its refusals are 400s
model_with "$tmp/mistral" "$data/templates/mistral.jinja"
serve_start mistral --model "$tmp/mistral"
printf '%s' '[{"role": "user", "content": "Describe Bath."}]' >"$tmp/user.json"
"$spex" chat-template --model "$tmp/mistral" --messages "$tmp/user.json" >"$tmp/mprompt"
want=$(/usr/bin/python3 -c 'import json,sys; print(json.dumps(open(sys.argv[1], encoding="utf-8").read()))' "$tmp/mprompt" \
       | "$spex" tokenize --model "$tmp/mistral" | /usr/bin/python3 -c 'import json,sys; print(len(json.loads(sys.stdin.read())))')
got=$(curl -s "$mistral_url/v1/chat/completions" -H 'Content-Type: application/json' \
      -d '{"messages": [{"role": "user", "content": "Describe Bath."}], "max_tokens": 2, "temperature": 0}' \
      | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["usage"]["prompt_tokens"])')
[ "$got" = "$want" ] || fail "serve: prompt_tokens $got, Mistral's rendering has $want tokens"
grep -q "[INST]" "$tmp/mprompt" || fail "the Mistral prompt lacks [INST]: $(cat "$tmp/mprompt")"
code=$(curl -s -o "$tmp/refused.json" -w '%{http_code}' "$mistral_url/v1/chat/completions" -H 'Content-Type: application/json' \
       -d '{"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "Hi"}], "max_tokens": 2}')
[ "$code" = 400 ] || fail "serve: a conversation the template refuses got $code, want 400"
grep -q "raise_exception: Conversation roles must alternate" "$tmp/refused.json" \
    || fail "serve: the 400 lacks the template's message: $(cat "$tmp/refused.json")"
grep -q '"param": *"messages"' "$tmp/refused.json" || fail "serve: the 400 does not name messages: $(cat "$tmp/refused.json")"
grep -q "chat format: .*mistral/tokenizer_config.json: chat_template" "$tmp/mistral.log" || fail "serve does not log its chat format"
kill -TERM "$mistral_pid"
wait "$mistral_pid" || fail "serve did not exit 0 on SIGTERM"

[ $fails -eq 0 ] && echo "test_chat_template: all passed" || { echo "test_chat_template: $fails failures"; exit 1; }
