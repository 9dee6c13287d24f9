/* tok_pretok.c - from text to BPE pieces: added-token cutting and the Split
 * steps of the pre-tokenizer.
 *
 * Design: no intermediate piece lists. Each step walks its input, and hands
 * every piece it produces straight to the next step (a recursion as deep as
 * there are steps, 4 for DeepSeek-V3); the last step hands pieces to BPE. The
 * pieces are (pointer, length) views into the caller's text, never copies.
 *
 * Hugging Face semantics reproduced here:
 *  - added tokens: leftmost-longest match; lstrip/rstrip swallow the adjacent
 *    whitespace into the token; single_word requires no word character on
 *    either side; tokens with normalized=false are cut first, then the others
 *    from what is left;
 *  - Split "Isolated": matches and the gaps between them are pieces; each
 *    regex runs on one piece as if it were the whole string (so lookaheads
 *    stop at the piece's end); an empty match right where the previous match
 *    ended is skipped by advancing one character (the onig crate's rule). */
#include <string.h>

#include "coordinator/tokenizer/tok_internal.h"

/* Rust's char::is_whitespace (Unicode White_Space), used by lstrip/rstrip. */
static bool cp_is_space(uint32_t cp) {
    return (cp >= 0x09 && cp <= 0x0d) || cp == 0x20 || cp == 0x85 || cp == 0xa0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 || cp == 0x202f || cp == 0x205f ||
           cp == 0x3000;
}

/* Word character for single_word. Approximation of Rust's char::is_alphanumeric:
 * ASCII letters and digits, and any non-ASCII non-space character. */
static bool cp_is_word(uint32_t cp) {
    if (cp < 0x80) return (cp >= '0' && cp <= '9') || ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z');
    return !cp_is_space(cp);
}

/* Code point ending at s[end) (i.e. the one just before `end`), or -1. */
static int64_t cp_before(const char *s, size_t end, size_t *len) {
    for (size_t k = 1; k <= 4 && k <= end; k++) {
        const unsigned char *p = (const unsigned char *)s + end - k;
        if (utf8_valid_len(p, k) == k) {
            *len = k;
            return utf8_decode(p, k);
        }
    }
    return -1;
}

static int64_t cp_at(const char *s, size_t pos, size_t n, size_t *len) {
    const unsigned char *p = (const unsigned char *)s + pos;
    *len = utf8_valid_len(p, n - pos);
    return *len ? (int64_t)utf8_decode(p, *len) : -1;
}

/* ---- regex ---- */

regex_t *tok_regex_compile(const char *pattern, size_t len, spex_err_t *err) {
    regex_t *re = NULL;
    OnigErrorInfo info;
    const UChar *p = (const UChar *)pattern;
    int r = onig_new(&re, p, p + len, ONIG_OPTION_NONE, ONIG_ENCODING_UTF8, ONIG_SYNTAX_DEFAULT, &info);
    if (r != ONIG_NORMAL) {
        UChar msg[ONIG_MAX_ERROR_MESSAGE_LEN];
        onig_error_code_to_str(msg, r, &info);
        spex_fail(err, "regex /%.*s/ does not compile: %s", (int)(len > 200 ? 200 : len), pattern, (char *)msg);
        return NULL;
    }
    return re;
}

/* ---- Split steps ---- */

static int split_step(tok_bpe_ctx_t *c, OnigRegion *region, size_t step, const char *s, size_t n,
                      spex_err_t *err);

/* Hand s[a..b) to the next step, unless empty. */
static int emit(tok_bpe_ctx_t *c, OnigRegion *region, size_t step, const char *s, size_t a, size_t b,
                spex_err_t *err) {
    if (a == b) return 0;
    if (step + 1 < c->t->n_splits) return split_step(c, region, step + 1, s + a, b - a, err);
    if (!tok_bpe_piece(c, s + a, b - a)) return spex_fail(err, "out of memory");
    return 0;
}

/* Next match of a literal pattern at or after `from`; false if none. */
/* Backtracking steps allowed per regex search: Oniguruma's default plus a
 * few per byte of subject (the pre-tokenizer patterns need about one per byte
 * of a whitespace run). */
#define TOK_RETRY_BASE 10000000UL
#define TOK_RETRY_PER_BYTE 16UL

static bool find_literal(const tok_split_t *sp, const char *s, size_t n, size_t from, size_t *a, size_t *b) {
    if (sp->literal_len == 0 || from > n) return false;
    const char *hit = memmem(s + from, n - from, sp->literal, sp->literal_len);
    if (!hit) return false;
    *a = (size_t)(hit - s);
    *b = *a + sp->literal_len;
    return true;
}

/* Next regex match at or after `from`, with the onig crate's empty-match rule.
 * Returns 1 found, 0 none, -1 error. *last_end is the end of the previous match
 * (SIZE_MAX for none). */
static int find_regex(const tok_split_t *sp, OnigRegion *region, OnigMatchParam *mp, const char *s, size_t n,
                      size_t from, size_t *last_end, size_t *a, size_t *b, spex_err_t *err) {
    const UChar *us = (const UChar *)s;
    while (from <= n) {
        /* Oniguruma's default of 10^7 backtracking steps per match refused 10 MB
         * of spaces (\s*[\r\n]+ backtracks once per space before \s+(?!\S)
         * matches them all; issue 16 item 7). A limit proportional to the rest of
         * the subject keeps each search linear and every valid input encodable. */
        onig_set_retry_limit_in_match_of_match_param(mp, TOK_RETRY_BASE + TOK_RETRY_PER_BYTE * (n - from));
        int r = onig_search_with_param(sp->re, us, us + n, us + from, us + n, region, ONIG_OPTION_NONE, mp);
        if (r == ONIG_MISMATCH) return 0;
        if (r < 0) {
            UChar msg[ONIG_MAX_ERROR_MESSAGE_LEN];
            onig_error_code_to_str(msg, r);
            return spex_fail(err, "regex search failed: %s", (char *)msg);
        }
        *a = (size_t)region->beg[0];
        *b = (size_t)region->end[0];
        if (*a == *b && *last_end == *b) { /* empty match glued to the last one */
            size_t l = utf8_valid_len(us + from, n - from);
            from += l ? l : 1;
            continue;
        }
        *last_end = *b;
        return 1;
    }
    return 0;
}

static int split_step(tok_bpe_ctx_t *c, OnigRegion *region, size_t step, const char *s, size_t n,
                      spex_err_t *err) {
    const tok_split_t *sp = &c->t->splits[step];
    size_t prev = 0, from = 0, last_end = SIZE_MAX, a = 0, b = 0;
    for (;;) {
        int found;
        if (sp->re) found = find_regex(sp, region, c->mp, s, n, from, &last_end, &a, &b, err);
        else found = find_literal(sp, s, n, from, &a, &b);
        if (found < 0) return -1;
        if (!found) break;
        if (emit(c, region, step, s, prev, a, err) || emit(c, region, step, s, a, b, err)) return -1;
        prev = from = b;
    }
    return emit(c, region, step, s, prev, n, err);
}

/* A span without added tokens: valid UTF-8 runs go through the Split steps;
 * runs of invalid bytes (which no regex should see) are pieces of their own. */
int tok_pretok_encode(tok_bpe_ctx_t *c, OnigRegion *region, const char *s, size_t n, spex_err_t *err) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        size_t start = i, l;
        while (i < n && (l = utf8_valid_len(u + i, n - i)) > 0) i += l;
        if (i > start) {
            int r = c->t->n_splits ? split_step(c, region, 0, s + start, i - start, err)
                                   : (tok_bpe_piece(c, s + start, i - start) ? 0 : spex_fail(err, "out of memory"));
            if (r) return -1;
        }
        start = i;
        while (i < n && utf8_valid_len(u + i, n - i) == 0) i++;
        if (i > start && !tok_bpe_piece(c, s + start, i - start)) return spex_fail(err, "out of memory");
    }
    return 0;
}

/* ---- added tokens ---- */

/* Longest added token of matcher m starting at s[pos], or NULL. */
static const tok_added_t *match_at(const tokenizer_t *t, const tok_matcher_t *m, const char *s, size_t pos,
                                   size_t n) {
    if (!m->first[(unsigned char)s[pos]]) return NULL;
    for (size_t k = 0; k < m->n_lens; k++) {
        uint64_t idx;
        if (m->lens[k] <= n - pos && tok_strmap_get(&m->map, s + pos, m->lens[k], &idx)) return &t->added[idx];
    }
    return NULL;
}

/* Apply lstrip/rstrip/single_word to a match [*a, *b) found at or after `floor`
 * (end of the previous token). Returns false if single_word rejects it. */
static bool adjust_match(const tok_added_t *tk, const char *s, size_t n, size_t floor, size_t *a, size_t *b) {
    size_t l;
    int64_t cp;
    if (tk->single_word) {
        if ((cp = cp_before(s, *a, &l)) >= 0 && cp_is_word((uint32_t)cp)) return false;
        if (*b < n && (cp = cp_at(s, *b, n, &l)) >= 0 && cp_is_word((uint32_t)cp)) return false;
    }
    if (tk->lstrip)
        while (*a > floor && (cp = cp_before(s, *a, &l)) >= 0 && cp_is_space((uint32_t)cp) && *a - l >= floor) *a -= l;
    if (tk->rstrip)
        while (*b < n && (cp = cp_at(s, *b, n, &l)) >= 0 && cp_is_space((uint32_t)cp)) *b += l;
    return true;
}

/* The gap s[a..b) between added tokens goes to the next group, or to the
 * pre-tokenizer after the last group. */
static int encode_gap(tok_bpe_ctx_t *c, OnigRegion *region, int group, const char *s, size_t a, size_t b,
                      spex_err_t *err) {
    if (a == b) return 0;
    if (group == 0) return tok_encode_span(c, region, 1, s + a, b - a, err);
    return tok_pretok_encode(c, region, s + a, b - a, err);
}

int tok_encode_span(tok_bpe_ctx_t *c, OnigRegion *region, int group, const char *s, size_t n, spex_err_t *err) {
    const tok_matcher_t *m = &c->t->cut[group];
    size_t prev = 0;
    for (size_t pos = 0; m->n_lens && pos < n; pos++) {
        const tok_added_t *tk = match_at(c->t, m, s, pos, n);
        if (!tk) continue;
        size_t a = pos, b = pos + tk->len;
        if (!adjust_match(tk, s, n, prev, &a, &b)) { /* rejected, but its bytes are consumed, as in HF */
            pos = b - 1;
            continue;
        }
        if (encode_gap(c, region, group, s, prev, a, err)) return -1;
        if (!tok_ids_push(c->out, tk->id)) return spex_fail(err, "out of memory");
        prev = b;
        pos = b - 1; /* the loop's ++ moves to b */
    }
    return encode_gap(c, region, group, s, prev, n, err);
}
