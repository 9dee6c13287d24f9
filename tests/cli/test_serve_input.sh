#!/usr/bin/env bash
# test_serve_input.sh - what `spex serve` makes of a request's bytes (issue 16 items 4 and 7):
#   - a NUL inside a string counts: "hello\u0000 world" has more prompt tokens than "hello" (it was
#     cut to "hello"), in a completion prompt and in chat content; a stop string holding a NUL is a 400;
#   - an empty prompt is a 400 naming "prompt" (as docs/serving.md says); top_p 1e-300 is accepted;
#   - characters after the JSON body are a 400 (invalid_json); whitespace after it is fine;
#   - two Content-Length headers that differ are a 400; two equal ones are fine;
#   - "Authorization: bearer KEY" (lowercase scheme, RFC 7235) is accepted; a wrong key still 401.
# Usage: test_serve_input.sh SPEX_BINARY TESTS_DATA_DIR
set -u
spex=$1
data=$(cd "$2" && pwd)
. "$(dirname "$0")/serve_lib.sh"
serve_test_init input
mkdir -p "$tmp/tiny"
for f in config.json model.safetensors; do ln -s "$data/golden/tiny-f32/$f" "$tmp/tiny/$f"; done
for f in tokenizer.json tokenizer_config.json; do ln -s "$data/tiny-tokenizer/$f" "$tmp/tiny/$f"; done

serve_start s --model "$tmp/tiny" --api-key K
port=${s_url##*:}
/usr/bin/python3 - "$port" >"$tmp/input.out" 2>&1 <<'PY'
import json, socket, sys
port = int(sys.argv[1])
fails = []
def raw(head, body=b""):
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(30)
    s.sendall(head + b"\r\n" + body)
    data = b""
    while True:
        d = s.recv(65536)
        if not d: break
        data += d
    status = int(data.split(b" ", 2)[1])
    payload = data.split(b"\r\n\r\n", 1)[1]
    return status, (json.loads(payload) if payload.strip() else None)
def post(path, body, auth=b"Bearer K", extra=b""):
    if not isinstance(body, bytes): body = json.dumps(body).encode()
    head = (b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: " + auth +
            b"\r\nContent-Length: %d\r\n" % len(body) + extra)
    return raw(head, body)
def check(what, cond, detail=""):
    if not cond: fails.append("%s %s" % (what, detail))
def prompt_tokens(body, path=b"/v1/completions"):
    st, j = post(path, body)
    check("200 for %r" % body, st == 200, j)
    return j["usage"]["prompt_tokens"] if st == 200 else -1
# item 4: NUL inside strings
a = prompt_tokens({"prompt": "hello", "max_tokens": 1})
b = prompt_tokens({"prompt": "hello\u0000 world", "max_tokens": 1})
check("NUL in prompt cut the prompt:", b > a, (a, b))
c1 = prompt_tokens({"messages": [{"role": "user", "content": "hello"}], "max_tokens": 1}, b"/v1/chat/completions")
c2 = prompt_tokens({"messages": [{"role": "user", "content": "hello\u0000 world"}], "max_tokens": 1},
                   b"/v1/chat/completions")
check("NUL in chat content cut it:", c2 > c1, (c1, c2))
c3 = prompt_tokens({"messages": [{"role": "user", "content": [{"type": "text", "text": "hello\u0000 world"}]}],
                    "max_tokens": 1}, b"/v1/chat/completions")
check("NUL in a text part cut it:", c3 == c2, (c2, c3))
st, j = post(b"/v1/completions", {"prompt": "hi", "max_tokens": 1, "stop": ["a\u0000b"]})
check("stop with NUL:", st == 400 and j["error"]["param"] == "stop", (st, j))
# item 7: empty prompt, tiny top_p, trailing bytes, Content-Length, bearer
st, j = post(b"/v1/completions", {"prompt": "", "max_tokens": 1})
check("empty prompt:", st == 400 and j["error"]["param"] == "prompt", (st, j))
st, j = post(b"/v1/completions", {"prompt": "hi", "max_tokens": 1, "top_p": 1e-300})
check("top_p 1e-300:", st == 200, (st, j))
st, j = post(b"/v1/completions", {"prompt": "hi", "max_tokens": 1, "top_p": 0})
check("top_p 0:", st == 400 and j["error"]["param"] == "top_p", (st, j))
st, j = post(b"/v1/completions", b'{"prompt": "hi", "max_tokens": 1} xx')
check("trailing garbage:", st == 400 and j["error"]["code"] == "invalid_json", (st, j))
st, j = post(b"/v1/completions", b'{"prompt": "hi", "max_tokens": 1}{}')
check("two JSON values:", st == 400 and j["error"]["code"] == "invalid_json", (st, j))
st, j = post(b"/v1/completions", b'{"prompt": "hi", "max_tokens": 1} \r\n\t ')
check("trailing whitespace:", st == 200, (st, j))
body = b'{"prompt": "hi", "max_tokens": 1}'
st, j = post(b"/v1/completions", body, extra=b"Content-Length: %d\r\n" % (len(body) + 9))
check("two different Content-Length:", st == 400, (st, j))
st, j = post(b"/v1/completions", body, extra=b"Content-Length: %d\r\n" % len(body))
check("two equal Content-Length:", st == 200, (st, j))
for auth in (b"bearer K", b"BEARER K", b"Bearer  K"):
    st, j = post(b"/v1/completions", body, auth=auth)
    check("Authorization: %s:" % auth.decode(), st == 200, (st, j))
for auth in (b"bearer k", b"BearerK", b"Basic K"):
    st, j = post(b"/v1/completions", body, auth=auth)
    check("Authorization: %s:" % auth.decode(), st == 401, (st, j))
for f in fails: print("FAIL:", f)
print("%d check(s) failed" % len(fails))
sys.exit(1 if fails else 0)
PY
rc=$?
cat "$tmp/input.out"
[ $rc = 0 ] || fail "request input checks (see above)"
[ $fails = 0 ] && echo "PASS test_serve_input" || { echo "$fails failure(s)"; exit 1; }
