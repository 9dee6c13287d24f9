#!/usr/bin/env bash
# serve_soak.sh - a soak of `spex serve` on the shipped model (models/austen-moe): a bounded mixed
# load for DURATION seconds, then checks. Not part of ctest (minutes long); run by hand, e.g.
#   nice -n 19 tests/soak/serve_soak.sh build/spex 1200
# Load (serve_soak.py, 6 client threads pausing 50-300 ms between requests, Python stdlib only): streamed and plain completions, chat,
# streams the client abandons after a few chunks (499), bad requests (invalid JSON, trailing bytes,
# wrong types: 400), and bursts beyond --max-running 2 + --max-queue 2 (429). RSS of the server is
# sampled every 10 s. Checks: RSS after warm-up (the first fifth, at least 60 s) grows by at most 5%
# (median of the last 3 samples against the median of the 3 after warm-up); every request got an
# HTTP answer; /metrics' spex_http_requests_total per status equals what the client saw (a stream
# abandoned after its 200 header is a 499 if the server noticed before it ended, else a 200: those two
# are compared together). All clients come from 127.0.0.1, so the per-client connection cap is raised
# to the connection limit (the load holds at most 48 connections), and the prompt prefix cache is
# 16 MB (it fills during the warm-up; at its default 256 MB it is still filling, by design, after
# 20 minutes, about 1 MB per 10 s of this load). Prints the figures; exit 1 on a
# failed check.
# Usage: serve_soak.sh SPEX_BINARY [DURATION_SECONDS=1200] [MODEL_DIR=models/austen-moe]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
spex=$(readlink -f "$1")
duration=${2:-1200}
model=${3:-$here/../../models/austen-moe}
tmp=$(mktemp -d /tmp/spex-soak-XXXXXX)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
"$spex" serve --model "$model" --port 0 --port-file "$tmp/port" --max-running 2 --max-queue 2 \
    --max-connections 64 --max-connections-per-client 64 --prefix-cache-mb 16 2>"$tmp/serve.log" &
pid=$!
for _ in $(seq 600); do [ -s "$tmp/port" ] && break; sleep 0.1; done
[ -s "$tmp/port" ] || { echo "serve did not start: $(tail -5 "$tmp/serve.log")"; exit 1; }
url="http://127.0.0.1:$(cat "$tmp/port")"
for _ in $(seq 600); do [ "$(curl -s -o /dev/null -w '%{http_code}' "$url/health")" = 200 ] && break; sleep 0.1; done
/usr/bin/python3 "$here/serve_soak.py" "$url" "$pid" "$duration"
rc=$?
kill -TERM "$pid"
wait "$pid" || { echo "serve exited $? after SIGTERM: $(tail -3 "$tmp/serve.log")"; rc=1; }
pid=
exit $rc
