#!/usr/bin/env bash
# test_shipped_model.sh - the shipped trained model loads, tokenizes, and agrees with the PyTorch
# implementation it was trained with (perplexity within 1e-3 relative, greedy continuations token for
# token), and speculation keeps its greedy output. See tests/ref/check_shipped.py.
# Usage: test_shipped_model.sh SPEX_BINARY TESTS_DATA_DIR
set -eu
spex=$1
data=$(cd "$2" && pwd)
repo=$(cd "$data/../.." && pwd)
exec /usr/bin/python3 "$repo/tests/ref/check_shipped.py" "$spex" "$repo/models/austen-moe" "$data/austen-val-3k.txt"
