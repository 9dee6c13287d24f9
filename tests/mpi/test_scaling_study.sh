#!/usr/bin/env bash
# test_scaling_study.sh - launch/scaling-study and `spex bench scale` on a tiny synthetic model, in seconds:
#   - a 2-point sweep (1 worker rank, K = 0 and 1) under mpirun on this machine writes a header and one
#     row per point; every row has as many fields as the header; the knob columns hold the point's
#     values, the link delay column is labelled as emulation, tokens/s and wire bytes are positive;
#   - resume: the same command again runs nothing and leaves the file as it was; with the last row
#     removed (an interrupted sweep) it runs exactly that point again; a sweep killed mid-point
#     leaves only whole rows behind;
#   - launch/scaling-plot renders every figure as PNG and SVG from that CSV;
#   - usage errors: a link rate outside the netns cluster, a bad delay, a missing model (exit 2);
#   - the netns cluster part (a rate-limited point with an emulated delay) needs root and ip netns:
#     without them it is skipped and says so (the rest still runs).
# Usage: test_scaling_study.sh SPEX_BINARY TESTS_DATA_DIR
set -u
spex=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
src=$(cd "$(dirname "$0")/../.." && pwd)
study=$src/launch/scaling-study
tmp=$(mktemp -d /tmp/spex-scale-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_mpi_yield_when_idle=1

"$spex" synth --out "$tmp/m" --preset tiny >/dev/null || { echo "FAIL: synth"; exit 1; }
csv=$tmp/s.csv
sweep() { timeout 120 "$study" --spex "$spex" --model "$tmp/m" --out "$csv" --local --workers 1 --batch 2 \
          --spec-k 0,1 --codec fp8 --delay 0 --prompt 8 -n 6 "$@"; }

sweep 2>"$tmp/log1" || { fail "sweep exited non-zero"; cat "$tmp/log1"; }
grep -q '\[2/2\]' "$tmp/log1" || fail "no progress line for point 2 of 2: $(cat "$tmp/log1")"
[ "$(wc -l < "$csv")" = 3 ] || fail "expected header + 2 rows, got $(wc -l < "$csv") lines"
header=$(head -1 "$csv")
for col in point launcher link_rate workers batch spec_k codec combine link_delay_ms_emulated prefill_tok_s \
           decode_tok_s decode_attention_s decode_other_s decode_dispatch_s decode_expert_s decode_combine_s \
           decode_wait_s decode_dispatch_B_tok decode_combine_B_tok decode_moe_calls decode_rows decode_pairs \
           decode_messages decode_rank_max_over_mean tokens_per_step wall_s; do
    echo ",$header," | grep -q ",$col," || fail "column $col missing from the header"
done
nh=$(echo "$header" | awk -F, '{print NF}')
col() { echo "$header" | tr , '\n' | grep -nx "$1" | cut -d: -f1; }
tail -n +2 "$csv" | while IFS= read -r row; do
    nf=$(echo "$row" | awk -F, '{print NF}')
    [ "$nf" = "$nh" ] || echo "FAIL: row has $nf fields, header $nh: $row"
    get() { echo "$row" | cut -d, -f"$(col "$1")"; }
    [ "$(get workers)" = 1 ] && [ "$(get batch)" = 2 ] && [ "$(get codec)" = fp8 ] && [ "$(get link_rate)" = native ] \
        || echo "FAIL: knob columns wrong: $row"
    awk -v a="$(get decode_tok_s)" -v b="$(get prefill_tok_s)" -v c="$(get decode_dispatch_B_tok)" \
        -v d="$(get decode_combine_B_tok)" 'BEGIN { exit !(a > 0 && b > 0 && c > 0 && d > 0) }' \
        || echo "FAIL: non-positive tokens/s or bytes: $row"
done | grep FAIL && fails=$((fails + 1))
keys=$(cut -d, -f1 "$csv" | tail -n +2 | tr '\n' ' ')
[ "$keys" = "w1_b2_k0_fp8_native_d0 w1_b2_k1_fp8_native_d0 " ] || fail "point keys: '$keys'"

# resume: nothing to do
cp "$csv" "$tmp/before.csv"
sweep 2>"$tmp/log2" || fail "second run exited non-zero"
grep -q "0 run, 2 already in" "$tmp/log2" || fail "second run did not skip both points: $(tail -1 "$tmp/log2")"
cmp -s "$csv" "$tmp/before.csv" || fail "second run changed the CSV"
# resume after an interruption: the last point is missing, and only it runs
head -2 "$tmp/before.csv" > "$csv"
sweep 2>"$tmp/log3" || fail "resumed run exited non-zero"
grep -q "1 run, 1 already in" "$tmp/log3" || fail "resume did not run exactly the missing point: $(tail -1 "$tmp/log3")"
[ "$(cut -d, -f1 "$csv" | tail -n +2 | tr '\n' ' ')" = "$keys" ] || fail "after resume: $(cut -d, -f1 "$csv")"
# a kill mid-sweep leaves whole rows only
rm -f "$csv"
( timeout -s KILL 2 "$study" --spex "$spex" --model "$tmp/m" --out "$csv" --local --workers 1 --batch 2 \
    --spec-k 0,1,2,3 --codec raw,fp8 --prompt 8 -n 6; true ) >/dev/null 2>&1
if [ -s "$csv" ]; then
    bad=$(tail -n +2 "$csv" | awk -F, -v n="$nh" 'NF != n' | wc -l)
    [ "$bad" = 0 ] || fail "a killed sweep left $bad torn rows"
fi

# figures (gnuplot): every plot as PNG and SVG; a CSV that is not a sweep's is refused
"$src/launch/scaling-plot" "$csv" "$tmp/plots" >"$tmp/logp" 2>&1 || fail "scaling-plot: $(cat "$tmp/logp")"
for p in tokens_vs_ranks step_breakdown bytes_per_token speedup_vs_rate; do
    for e in png svg; do [ -s "$tmp/plots/$p.$e" ] || fail "scaling-plot wrote no $p.$e"; done
done
printf 'a,b\n1,2\n' > "$tmp/bad.csv"
"$src/launch/scaling-plot" "$tmp/bad.csv" "$tmp/plots2" >/dev/null 2>&1
[ $? = 2 ] || fail "scaling-plot accepted a CSV without the sweep's columns"

# usage errors
"$study" --spex "$spex" --model "$tmp/m" --out "$tmp/x.csv" --local --rate 100mbit >/dev/null 2>&1
[ $? = 2 ] || fail "--rate outside --netns not refused with exit 2"
"$study" --spex "$spex" --model "$tmp/m" --out "$tmp/x.csv" --delay 1ms >/dev/null 2>&1
[ $? = 2 ] || fail "--delay 1ms not refused with exit 2"
"$study" --spex "$spex" --model "$tmp/none" --out "$tmp/x.csv" >/dev/null 2>&1
[ $? = 2 ] || fail "a missing model not refused with exit 2"
[ ! -e "$tmp/x.csv" ] || fail "a refused sweep wrote a CSV"

# the netns cluster: one rate-limited point with an emulated delay
if [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null || ! ip netns add spex-scale-probe 2>/dev/null; then
    echo "SKIPPED netns part: needs root and network namespaces (ip netns)"
else
    ip netns del spex-scale-probe
    SPEX_NETNS_NAME=scale-test timeout -s KILL 120 "$study" --spex "$spex" --model "$tmp/m" --out "$tmp/n.csv" \
        --netns --workers 1 --batch 1 --spec-k 0 --codec fp8 --rate 10mbit --delay 1 --prompt 8 -n 4 2>"$tmp/logn" \
        || { fail "netns sweep failed"; cat "$tmp/logn"; }
    grep -q '^w1_b1_k0_fp8_10mbit_d1,netns,10mbit,1,1,0,fp8,presum,1,' "$tmp/n.csv" \
        || fail "netns row: $(tail -1 "$tmp/n.csv")"
    ip netns list | grep -q scale-test && fail "the netns cluster the sweep started is still up"
fi

[ "$fails" = 0 ] && echo "scaling study: all checks passed"
exit $((fails > 0))
