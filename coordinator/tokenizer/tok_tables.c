/* tok_tables.c - lookup tables derived from the parsed tokenizer.json, built
 * once at load: the added-token matchers (one per normalized flag), every
 * token's decoded bytes (for decode and streaming), and, for models with
 * ignore_merges, a raw-bytes -> id map.
 *
 * Design: all of them are flat arrays or tok_maps pointing into arenas owned
 * by the tokenizer, so encode/decode never allocate per token. */
#include <stdlib.h>
#include <string.h>

#include "coordinator/tokenizer/tok_internal.h"

static int cmp_len_desc(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x < y) - (x > y);
}

/* Group the added tokens by their normalized flag into the two matchers. */
int tok_build_matchers(tokenizer_t *t, spex_err_t *err) {
    for (int g = 0; g < 2; g++) {
        tok_matcher_t *m = &t->cut[g];
        if (t->n_added && !(m->lens = malloc(t->n_added * sizeof *m->lens))) return spex_fail(err, "out of memory");
        for (size_t i = 0; i < t->n_added; i++) {
            const tok_added_t *a = &t->added[i];
            if (a->normalized != (g == 1)) continue;
            uint64_t dummy;
            /* Same content listed twice (a malformed file): the first one wins. */
            if (tok_strmap_get(&m->map, a->content, a->len, &dummy)) continue;
            if (!tok_strmap_put(&m->map, a->content, a->len, i)) return spex_fail(err, "out of memory");
            m->first[(unsigned char)a->content[0]] = true;
            bool seen = false;
            for (size_t k = 0; k < m->n_lens; k++) seen |= m->lens[k] == a->len;
            if (!seen) m->lens[m->n_lens++] = a->len;
        }
        if (m->n_lens) qsort(m->lens, m->n_lens, sizeof *m->lens, cmp_len_desc);
    }
    return 0;
}

/* ---- decoded bytes per id ---- */

/* ByteLevel decoding of one token string, as Hugging Face does it: if every
 * character is in the byte alphabet, the bytes it stands for; otherwise (added
 * tokens like "<｜end▁of▁sentence｜>") the string's own UTF-8 bytes. */
static size_t bytelevel_decode(const char *s, size_t len, const int16_t *inv, char *out) {
    const unsigned char *u = (const unsigned char *)s;
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        size_t l = utf8_valid_len(u + i, len - i);
        uint32_t cp = l ? utf8_decode(u + i, l) : UINT32_MAX;
        int b = cp < TOK_BYTELEVEL_CP_END ? inv[cp] : -1;
        if (b < 0) {
            memcpy(out, s, len);
            return len;
        }
        out[n++] = (char)b;
        i += l;
    }
    return n;
}

static void set_token(tokenizer_t *t, int32_t id, const char *s, size_t len, const int16_t *inv, size_t *used) {
    size_t n = bytelevel_decode(s, len, inv, t->bytes + *used);
    t->bytes_off[id] = (uint64_t)*used << 32 | n;
    *used += n;
}

/* Decoded bytes never outnumber the string's bytes, so the strings arena size
 * bounds the bytes arena. Added tokens override vocab entries with their id. */
int tok_build_bytes(tokenizer_t *t, size_t strings_len, spex_err_t *err) {
    size_t n = (size_t)t->vocab_size, used = 0;
    int16_t inv[TOK_BYTELEVEL_CP_END];
    tok_bytelevel_inverse(inv);
    t->bytes = malloc(strings_len + 1);
    t->bytes_off = malloc(n * sizeof *t->bytes_off);
    t->special = calloc(n, 1);
    if (!t->bytes || !t->bytes_off || !t->special) return spex_fail(err, "out of memory");
    memset(t->bytes_off, 0xff, n * sizeof *t->bytes_off);
    for (size_t i = 0; i < t->vocab.cap; i++) {
        const tok_strmap_slot_t *s = &t->vocab.slots[i];
        if (s->key) set_token(t, (int32_t)s->value, s->key, s->len, inv, &used);
    }
    for (size_t i = 0; i < t->n_added; i++) {
        set_token(t, t->added[i].id, t->added[i].content, t->added[i].len, inv, &used);
        t->special[t->added[i].id] = t->added[i].special;
    }
    return 0;
}

/* model.ignore_merges: pieces that are a whole vocab entry skip BPE, which
 * needs a lookup by raw bytes. */
int tok_build_raw_vocab(tokenizer_t *t, spex_err_t *err) {
    for (size_t i = 0; i < t->vocab.cap; i++) {
        const tok_strmap_slot_t *s = &t->vocab.slots[i];
        if (!s->key) continue;
        size_t len;
        const char *b = tokenizer_token_bytes(t, (int32_t)s->value, &len);
        if (b && !tok_strmap_put(&t->raw_vocab, b, len, s->value)) return spex_fail(err, "out of memory");
    }
    return 0;
}
