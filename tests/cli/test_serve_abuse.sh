#!/usr/bin/env bash
# test_serve_abuse.sh - hostile HTTP clients cannot lock `spex serve` out (issue 16 item 2):
#   - 16 connections that send nothing, with --max-connections 16, from one address and then from two
#     (127.0.0.2, 127.0.0.3): /health from the same address and from another one still answers at
#     once (the newcomer evicts the oldest connection that holds a slot without a request);
#   - the per-client-address cap: one address cannot hold more than --max-connections-per-client;
#   - an idle connection, a byte-by-byte header and a byte-by-byte body are closed by the server
#     after --header-timeout / --body-timeout, an idle keep-alive connection after
#     --keepalive-timeout; a request in progress is never cut by those deadlines.
# Timing: only liveness bounds with wide margins (closed within 5x the configured timeout; /health
# answered within 5 s, where the defect took 100+ s).
# Usage: test_serve_abuse.sh SPEX_BINARY TESTS_DATA_DIR
set -u
spex=$1
data=$(cd "$2" && pwd)
. "$(dirname "$0")/serve_lib.sh"
serve_test_init abuse
serve_models

serve_start s --model "$tmp/slow" --spec-k 0 --max-connections 16 --max-connections-per-client 8 \
    --header-timeout 1 --body-timeout 1 --keepalive-timeout 1
port=${s_url##*:}
/usr/bin/python3 - "$port" "$tmp/slow" >"$tmp/abuse.out" 2>&1 <<'PY'
import socket, sys, time
port = int(sys.argv[1])
fails = []
def conn(src="127.0.0.1"):
    s = socket.socket()
    s.bind((src, 0))
    s.connect(("127.0.0.1", port))
    return s
def closed_within(s, limit, send=None):
    """True if the server closes s within `limit` s (optionally sending `send` one byte every 0.2 s)."""
    s.settimeout(0.2)
    t0, i = time.time(), 0
    while time.time() - t0 < limit:
        try:
            if send and i < len(send):
                s.send(send[i:i + 1]); i += 1
            if s.recv(4096) == b"":
                return True
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return True
    return False
def is_closed(s):
    s.setblocking(False)
    try:
        return s.recv(1) == b""
    except BlockingIOError:
        return False
    except (ConnectionResetError, BrokenPipeError):
        return True
def health(src="127.0.0.1", timeout=5.0):
    try:
        s = conn(src)
        s.settimeout(timeout)
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            d = s.recv(4096)
            if not d: break
            data += d
        return data.split(b"\r\n", 1)[0].decode()
    except Exception as e:
        return "error: %r" % e
# 1. 16 idle connections from one address: /health from it and from another still answers
idle = [conn() for _ in range(16)]
time.sleep(0.2)
for src in ("127.0.0.1", "127.0.0.9"):
    h = health(src)
    if " 200 " not in h: fails.append("16 idle connections from 127.0.0.1: /health from %s got %r" % (src, h))
for s in idle: s.close()
# 2. 8 + 8 idle connections from two addresses fill every slot: a third address still gets /health
idle = [conn("127.0.0.2") for _ in range(8)] + [conn("127.0.0.3") for _ in range(8)]
time.sleep(0.2)
h = health("127.0.0.4")
if " 200 " not in h: fails.append("all 16 slots idle: /health from a new address got %r" % h)
# the per-client cap: the 9th connection of 127.0.0.2 evicted one of its own, not 127.0.0.3's
extra = conn("127.0.0.2")
time.sleep(0.3)
evicted = [i for i, s in enumerate(idle) if is_closed(s)]
if not evicted or any(i >= 8 for i in evicted):
    fails.append("9th connection of 127.0.0.2: evicted %r (want one of 0..7)" % evicted)
for s in idle + [extra]: s.close()
time.sleep(0.2)
# 3. deadlines: idle (header timeout 1 s), byte-by-byte header, byte-by-byte body, idle keep-alive
s = conn()
if not closed_within(s, 5): fails.append("an idle connection was not closed after the header timeout")
s = conn()
if not closed_within(s, 5, b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + b"a" * 100 + b"\r\n\r\n"):
    fails.append("a byte-by-byte header was not cut after the header timeout")
s = conn()
s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n")
if not closed_within(s, 5, b"{\"prompt\": [5, 6, 7], \"max_tokens\": 1" + b" " * 300 + b"}"):
    fails.append("a byte-by-byte body was not cut after the body timeout")
s = conn()
s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
s.settimeout(5)
first = s.recv(4096)
if b" 200 " not in first.split(b"\r\n", 1)[0]: fails.append("keep-alive request: %r" % first[:40])
if not closed_within(s, 5): fails.append("an idle keep-alive connection was not closed after its timeout")
# 4. a request that takes longer than every deadline is answered in full
s = conn()
body = b'{"prompt": [5, 6, 7], "max_tokens": 4000, "temperature": 0, "stream": true}'
s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n"
          b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
s.settimeout(60)
data, t0 = b"", time.time()
while True:
    d = s.recv(65536)
    if not d: break
    data += d
if b"[DONE]" not in data: fails.append("a streamed answer was cut (%d bytes, %.1f s)" % (len(data), time.time() - t0))
print("4000-token stream took %.1f s (deadlines 1 s)" % (time.time() - t0), file=sys.stderr)
print("\n".join("FAIL: " + f for f in fails) if fails else "ok")
PY
grep -q '^ok$' "$tmp/abuse.out" || fail "$(cat "$tmp/abuse.out")"
cat "$tmp/abuse.out" >&2
[ "$(curl -s -o /dev/null -w '%{http_code}' "$s_url/health")" = 200 ] || fail "server unhealthy after the abuse"
kill -TERM "$s_pid"; wait "$s_pid" 2>/dev/null
if [ "$fails" -gt 0 ]; then echo "$fails failure(s)"; exit 1; fi
echo "serve abuse: all ok"
