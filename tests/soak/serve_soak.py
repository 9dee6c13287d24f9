"""serve_soak.py - the load and the checks of serve_soak.sh (see there).
Usage: serve_soak.py URL SERVER_PID DURATION_SECONDS"""
import collections, http.client, json, random, socket, statistics, sys, threading, time, urllib.parse, urllib.request

url, pid, duration = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
host = urllib.parse.urlparse(url)
lock = threading.Lock()
seen = collections.Counter()          # (endpoint, status) as the client saw them
unanswered = []                       # requests with no HTTP status
stop_at = time.time() + duration
PROMPTS = ["It is a truth universally acknowledged", "Mr. Darcy", "Elizabeth said", "The carriage", "\"My dear"]


def note(endpoint, status):
    with lock:
        seen[(endpoint, status)] += 1


def request(endpoint, body, stream=False, abandon_after=None):
    """One request on its own connection; returns the status (None: no answer)."""
    c = http.client.HTTPConnection(host.hostname, host.port, timeout=120)
    try:
        c.request("POST", endpoint, body=body, headers={"Content-Type": "application/json"})
        r = c.getresponse()
        status = r.status
        if abandon_after is not None and status == 200:
            for _ in range(abandon_after):
                if not r.fp.readline():
                    break
            c.sock.shutdown(socket.SHUT_RDWR)   # the client goes away mid-stream
            status = 499
        else:
            data = r.read()
            if stream and status == 200 and b"[DONE]" not in data:
                raise RuntimeError("stream without [DONE]")
        note(endpoint, status)
        return status
    except Exception as e:   # noqa: BLE001 - any failure to get an answer is what we count
        with lock:
            unanswered.append("%s: %r" % (endpoint, e))
        return None
    finally:
        c.close()


def one(rng):
    kind = rng.random()
    p = rng.choice(PROMPTS)
    n = rng.randint(4, 48)
    if kind < 0.25:
        request("/v1/completions", json.dumps({"prompt": p, "max_tokens": n, "stream": True,
                                               "stream_options": {"include_usage": True}}), stream=True)
    elif kind < 0.45:
        request("/v1/completions", json.dumps({"prompt": p, "max_tokens": n, "temperature": 0.7, "seed": rng.randint(0, 99)}))
    elif kind < 0.60:
        request("/v1/chat/completions", json.dumps({"messages": [{"role": "user", "content": p}], "max_tokens": n}))
    elif kind < 0.72:   # abandoned stream
        request("/v1/completions", json.dumps({"prompt": p, "max_tokens": 200, "stream": True}), abandon_after=3)
    elif kind < 0.85:   # bad requests
        bad = rng.choice(['{"prompt": ', '{"prompt": "a"} x', '{"prompt": 5}', '{"prompt": "a", "max_tokens": -1}',
                          '{"messages": []}', '[1,2]', '{"prompt": "", "max_tokens": 3}'])
        request(rng.choice(["/v1/completions", "/v1/chat/completions"]), bad)
    else:   # a burst beyond max-running + max-queue: some get 429
        ts = [threading.Thread(target=request, args=("/v1/completions", json.dumps({"prompt": p, "max_tokens": 32})))
              for _ in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()


def client(seed):
    rng = random.Random(seed)
    while time.time() < stop_at:
        one(rng)
        time.sleep(rng.uniform(0.05, 0.3))   # bounded: each client waits between requests


def rss_kb():
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


samples = []
def sampler():
    t0 = time.time()
    while time.time() < stop_at:
        samples.append((time.time() - t0, rss_kb()))
        time.sleep(10)
    samples.append((time.time() - t0, rss_kb()))


threads = [threading.Thread(target=client, args=(i,)) for i in range(6)] + [threading.Thread(target=sampler)]
for t in threads:
    t.start()
for t in threads:
    t.join()

metrics = {}
with urllib.request.urlopen(url + "/metrics", timeout=30) as r:   # noqa: S310 - local server
    for line in r.read().decode().splitlines():
        if line.startswith("spex_http_requests_total{"):
            labels, value = line[len("spex_http_requests_total{"):].split("} ")
            kv = dict(x.split("=", 1) for x in labels.split(","))
            metrics[(kv["endpoint"].strip('"'), int(kv["status"].strip('"')))] = int(float(value))
failed = []
warm = max(60.0, duration / 5)
after = [kb for t, kb in samples if t >= warm]
base = statistics.median(after[:3]) if len(after) >= 3 else None
final = statistics.median(after[-3:]) if len(after) >= 3 else None
growth = (final - base) / base if base else float("nan")
total = sum(seen.values())
print("soak: %.0f s, %d requests answered, %d unanswered" % (duration, total, len(unanswered)))
for (ep, st), n in sorted(seen.items()):
    print("  client %-22s %3d: %6d   server: %d" % (ep, st, n, metrics.get((ep, st), 0)))
print("  RSS (MB): start %.1f, after warm-up %.1f, end %.1f, peak %.1f; growth after warm-up %.2f%%" % (
    samples[0][1] / 1024, (base or 0) / 1024, (final or 0) / 1024, max(kb for _, kb in samples) / 1024, 100 * growth))
print("  RSS samples (s:MB): " + " ".join("%.0f:%.1f" % (t, kb / 1024) for t, kb in samples))
if unanswered:
    failed.append("%d requests got no answer, e.g. %s" % (len(unanswered), unanswered[:3]))
if len(after) < 6:
    failed.append("too few RSS samples after the warm-up")
elif growth > 0.05:
    failed.append("RSS grew %.1f%% after warm-up" % (100 * growth))
# An abandoned stream is a 499 for the server only if it noticed before the stream ended (a short
# stream may be written whole into the socket first): compare 200 + 499 together.
def merged(counts):
    out = collections.Counter()
    for (ep, st), n in counts.items():
        if ep not in ("/health", "/metrics"):
            out[(ep, "200+499" if st in (200, 499) else st)] += n
    return out
cs, ms = merged(seen), merged(metrics)
for key in set(cs) | set(ms):
    if cs[key] != ms[key]:
        failed.append("%s %s: client saw %d, /metrics says %d" % (key[0], key[1], cs[key], ms[key]))
for status in (200, 400, 429, 499):
    if not any(st == status for (_, st) in seen):
        failed.append("the load produced no %d" % status)
for f in failed:
    print("FAIL: " + f)
sys.exit(1 if failed else 0)
