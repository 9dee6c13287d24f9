/* tokenizer.c - the public tokenizer API (see tokenizer.h): encode, decode,
 * lookups, freeing, and the streaming UTF-8 helper. Loading is in tok_load.c,
 * pre-tokenization in tok_pretok.c, BPE in tok_bpe.c.
 *
 * Encode owns all mutable state of one call (output ids, BPE scratch and
 * cache, the Oniguruma match region) so that a tokenizer_t is never written
 * after load. */
#include <stdlib.h>
#include <string.h>

#include "coordinator/tokenizer/tok_internal.h"

static void matcher_free(tok_matcher_t *m) {
    tok_strmap_free(&m->map);
    free(m->lens);
}

void tokenizer_free(tokenizer_t *t) {
    if (!t) return;
    tok_strmap_free(&t->vocab);
    tok_strmap_free(&t->raw_vocab);
    tok_u64map_free(&t->merges);
    tok_strmap_free(&t->added_ids);
    for (int g = 0; g < 2; g++) matcher_free(&t->cut[g]);
    for (size_t i = 0; i < t->n_splits; i++) {
        if (t->splits[i].re) onig_free(t->splits[i].re);
        free(t->splits[i].literal);
    }
    free(t->splits);
    free(t->added);
    free(t->bytes);
    free(t->bytes_off);
    free(t->special);
    free(t->strings);
    free(t);
}

int tokenizer_encode(const tokenizer_t *t, const char *text, size_t len, bool add_bos, int32_t **ids,
                     size_t *n_ids, spex_err_t *err) {
    *ids = NULL;
    *n_ids = 0;
    if (add_bos && t->bos_id < 0) return spex_fail(err, "encode: add_bos requested but the tokenizer has no bos_token");
    tok_ids_t out = {0};
    tok_bpe_ctx_t ctx = {.t = t, .out = &out};
    OnigRegion *region = onig_region_new();
    ctx.mp = onig_new_match_param();
    if (ctx.mp) onig_initialize_match_param(ctx.mp);
    int rc = region && ctx.mp ? 0 : spex_fail(err, "out of memory");
    if (!rc && add_bos && !tok_ids_push(&out, t->bos_id)) rc = spex_fail(err, "out of memory");
    if (!rc && len) rc = tok_encode_span(&ctx, region, 0, text, len, err);
    if (region) onig_region_free(region, 1);
    if (ctx.mp) onig_free_match_param(ctx.mp);
    tok_bpe_ctx_free(&ctx);
    if (rc) {
        free(out.v);
        return spex_err_prefix(err, "encode: ");
    }
    *ids = out.v;
    *n_ids = out.n;
    return 0;
}

const char *tokenizer_token_bytes(const tokenizer_t *t, int32_t id, size_t *len) {
    if (id < 0 || id >= t->vocab_size || t->bytes_off[id] == UINT64_MAX) return NULL;
    *len = (size_t)(uint32_t)t->bytes_off[id];
    return t->bytes + (t->bytes_off[id] >> 32);
}

bool tokenizer_is_special(const tokenizer_t *t, int32_t id) {
    return id >= 0 && id < t->vocab_size && t->special[id];
}

char *tokenizer_decode(const tokenizer_t *t, const int32_t *ids, size_t n, bool skip_special, size_t *out_len,
                       spex_err_t *err) {
    size_t total = 0, len;
    for (size_t i = 0; i < n; i++) { /* first pass: validate and size */
        if (!tokenizer_token_bytes(t, ids[i], &len)) {
            spex_fail(err, "decode: ids[%zu] = %d is not a token (vocab size %d)", i, ids[i], t->vocab_size);
            return NULL;
        }
        if (!(skip_special && t->special[ids[i]])) total += len;
    }
    char *out = malloc(total + 1), *p = out;
    if (!out) {
        spex_fail(err, "decode: out of memory");
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        if (skip_special && t->special[ids[i]]) continue;
        const char *b = tokenizer_token_bytes(t, ids[i], &len);
        memcpy(p, b, len);
        p += len;
    }
    *p = '\0';
    if (out_len) *out_len = total;
    return out;
}

int tokenizer_vocab_size(const tokenizer_t *t) { return t->vocab_size; }
int32_t tokenizer_bos_id(const tokenizer_t *t) { return t->bos_id; }
int32_t tokenizer_eos_id(const tokenizer_t *t) { return t->eos_id; }
bool tokenizer_add_bos_default(const tokenizer_t *t) { return t->add_bos; }

int32_t tokenizer_token_id(const tokenizer_t *t, const char *s) {
    uint64_t v;
    size_t len = strlen(s);
    if (tok_strmap_get(&t->added_ids, s, len, &v) || tok_strmap_get(&t->vocab, s, len, &v)) return (int32_t)v;
    return -1;
}

/* ---- utf8_stream ---- */

/* Could s[0..n) (n < full length) still become a valid sequence? Checks the
 * continuation bytes seen so far with the same strict rules as complete ones. */
static bool utf8_prefix_ok(const unsigned char *s, size_t n) {
    unsigned char pad[4];
    memcpy(pad, s, n);
    /* Complete it with the smallest continuation bytes that could follow. */
    size_t need = utf8_seq_len(s[0]);
    for (size_t i = n; i < need; i++) pad[i] = 0x80;
    if (utf8_valid_len(pad, need) == need) return true;
    /* 0x80 may be below the allowed range after E0/F0; try the top instead. */
    for (size_t i = n; i < need; i++) pad[i] = 0xbf;
    return utf8_valid_len(pad, need) == need;
}

size_t utf8_stream_push(utf8_stream_t *s, const char *bytes, size_t len, char *out) {
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        s->pending[s->n_pending++] = (unsigned char)bytes[i];
        size_t need = utf8_seq_len(s->pending[0]);
        if (need > s->n_pending && utf8_prefix_ok(s->pending, s->n_pending)) continue; /* wait for more */
        if (need == s->n_pending && utf8_valid_len(s->pending, need) == need) {
            memcpy(out + n, s->pending, need);
            n += need;
            s->n_pending = 0;
            continue;
        }
        /* Invalid: release the lead byte as is and rescan the rest. */
        out[n++] = (char)s->pending[0];
        size_t rest = s->n_pending - 1;
        unsigned char tmp[4];
        memcpy(tmp, s->pending + 1, rest);
        s->n_pending = 0;
        n += utf8_stream_push(s, (const char *)tmp, rest, out + n);
    }
    return n;
}

size_t utf8_stream_flush(utf8_stream_t *s, char *out) {
    size_t n = s->n_pending;
    memcpy(out, s->pending, n);
    s->n_pending = 0;
    return n;
}
