#!/usr/bin/env bash
# netns_ratelimit.sh - decode tokens/s with the expert worker behind a rate-limited
# link, for each transport codec: a 2-host netns cluster (launch/netns-cluster;
# coordinator on h1, one expert worker on h2), h2's link unshaped or limited with
# tc tbf both ways, `spex generate --spec-k 0` (one token per step, so every
# token pays a dispatch/combine round trip per MoE layer) under each --codec.
# Prints a Markdown table: decode tokens/s as "median (best)" of REPS runs (best =
# least disturbed by other load on the machine), and wire bytes per token (dispatch
# + combine over prompt and generated tokens, from --ep-stats). Needs root.
# Usage: bench/netns_ratelimit.sh SPEX MODEL_DIR [TOKENS] [REPS] [RATES] [CODECS]
#   RATES default "none 1gbit 100mbit", CODECS default "raw raw+zstd bf16 bf16+zstd fp8 fp8+zstd"
set -euo pipefail
spex=$(readlink -f "$1")
model=$(readlink -f "$2")
n=${3:-48} reps=${4:-3}
rates=${5:-none 1gbit 100mbit}
codecs=${6:-raw raw+zstd bf16 bf16+zstd fp8 fp8+zstd}
here=$(cd "$(dirname "$0")/.." && pwd)
nc=$here/launch/netns-cluster
export SPEX_NETNS_NAME=rl$$ OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
tmp=$(mktemp -d /tmp/spex-ratelimit-XXXXXX)
trap '"$nc" down >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT
timeout 30 "$nc" up --hosts 2 >/dev/null

# Repetitions are interleaved (every rate and codec once per round), so load that comes and goes
# on the machine spreads over all of them instead of skewing one.
declare -A runs tps bpt
for rep in $(seq 1 "$reps"); do
    for rate in $rates; do
        if [ "$rate" = none ]; then "$nc" shape h2 off >/dev/null; else "$nc" shape h2 "$rate" >/dev/null; fi
        for c in $codecs; do
            timeout -s KILL 300 "$nc" run -- "$here/launch/spex-mpirun" --workers 1 --spex "$spex" -- \
                generate --model "$model" --tokens 5,17,42 -n "$n" --spec-k 0 --codec "$c" --json \
                --ep-stats "$tmp/ep.json" >"$tmp/g.json" 2>"$tmp/err" || { echo "run failed: $rate $c" >&2; tail "$tmp/err" >&2; exit 1; }
            t=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["stats"]["decode_tokens_per_second"])' "$tmp/g.json")
            runs[$rate,$c]="${runs[$rate,$c]:-} $t"
            bpt[$c]=$(/usr/bin/python3 -c 'import json,sys; s = json.load(open(sys.argv[1]))["total"]; print(round((s["dispatch"]["wire_bytes"] + s["combine"]["wire_bytes"]) / (int(sys.argv[2]) + 3)))' "$tmp/ep.json" "$n")
        done
    done
    echo "  round $rep/$reps done" >&2
done
for rate in $rates; do
    for c in $codecs; do
        # shellcheck disable=SC2086
        sorted=$(printf '%s\n' ${runs[$rate,$c]} | sort -g)
        tps[$rate,$c]="$(sed -n "$(((reps + 1) / 2))p" <<<"$sorted") ($(tail -1 <<<"$sorted"))"
        echo "  $rate $c:${runs[$rate,$c]} tok/s" >&2
    done
done
"$nc" shape h2 off >/dev/null
printf '| codec | wire bytes/token |'
for rate in $rates; do printf ' %s |' "$([ "$rate" = none ] && echo unshaped || echo "$rate")"; done
printf '\n|---|---:|'; for _ in $rates; do printf -- '---:|'; done; echo
for c in $codecs; do
    printf '| %s | %s |' "$c" "${bpt[$c]}"
    for rate in $rates; do printf ' %s |' "${tps[$rate,$c]}"; done
    echo
done
