#!/usr/bin/env bash
# test_install.sh - `cmake --install` of the build tree that holds SPEX_BINARY into a temporary prefix:
# bin/spex runs (--help, and generate with the installed shipped model), the man page renders with
# `man -l` and documents every command, the docs are there, and the bash completion script loads and
# completes commands, options and option values.
# Usage: test_install.sh SPEX_BINARY TESTS_DATA_DIR
set -u
spex=$1
build=$(cd "$(dirname "$spex")" && pwd)
tmp=$(mktemp -d /tmp/spex-install-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
inst=$tmp/inst

cmake --install "$build" --prefix "$inst" >"$tmp/log" 2>&1 || fail "cmake --install: $(cat "$tmp/log")"
"$inst/bin/spex" --help >"$tmp/help" || fail "installed spex --help"
grep -q '^  serve ' "$tmp/help" || fail "--help lists no serve: $(cat "$tmp/help")"
model=$inst/share/spex/models/austen-moe
for f in config.json model.safetensors tokenizer.json tokenizer_config.json; do
    [ -s "$model/$f" ] || fail "shipped model: no $f"
done
"$inst/bin/spex" generate --model "$model" --prompt "It is a truth" -n 4 >/dev/null 2>&1 || fail "generate with the installed model"
for f in README.md serving.md expert-parallelism.md; do [ -s "$inst/share/doc/spex/$f" ] || fail "docs: no $f"; done

page=$inst/share/man/man1/spex.1
[ -s "$page" ] || fail "no man page"
if command -v man >/dev/null; then
    MANWIDTH=100 man -l "$page" >"$tmp/man" 2>"$tmp/man.err" || fail "man -l: $(cat "$tmp/man.err")"
    [ -s "$tmp/man.err" ] && fail "man -l warns: $(cat "$tmp/man.err")"
    for want in 'spex serve' 'spex batch' 'spex bench spec' 'spex generate' '--cors-origin' '--no-generation-config' \
                '--max-tokens' 'SPEX_API_KEY'; do
        grep -qF -- "$want" "$tmp/man" || fail "man page lacks '$want'"
    done
else
    echo "SKIP: man -l (no man here); the page exists"
fi

comp=$inst/share/bash-completion/completions/spex
[ -s "$comp" ] || fail "no bash completion"
complete_words() {  # complete_words WORD...: what the completion offers for the last word
    bash -c 'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _spex; echo "${COMPREPLY[*]}"' _ "$comp" "$@"
}
[ "$(complete_words spex ser)" = serve ] || fail "completion of 'spex ser': $(complete_words spex ser)"
case " $(complete_words spex serve --cors) " in *" --cors-origin "*) ;; *) fail "completion of serve --cors" ;; esac
case " $(complete_words spex bench s) " in *" spec "*) ;; *) fail "completion of bench s" ;; esac
case " $(complete_words spex bench spec --max) " in *" --max-k "*) ;; *) fail "completion of bench spec --max" ;; esac
mkdir -p "$tmp/modeldir"
case " $(cd "$tmp" && complete_words spex generate --model model) " in *" modeldir "*) ;;
    *) fail "completion of --model: not a path" ;; esac

[ "$fails" = 0 ] && echo "test_install: all passed"
exit $((fails > 0))
