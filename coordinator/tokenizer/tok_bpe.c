/* tok_bpe.c - byte-level BPE on one pre-tokenized piece.
 *
 * Design: a piece starts as one symbol per byte (the id of that byte's GPT-2
 * alphabet character), in a doubly linked list over arrays. A min-heap holds
 * every adjacent pair that has a merge, ordered by (rank, position); we pop the
 * best, skip it if it went stale (one side already merged away), merge, and
 * push the two new neighbour pairs. That is O(n log n) per piece, so even a
 * megabyte with no spaces is fine, and the order (lowest rank, then leftmost)
 * is exactly Hugging Face's, which matters for runs like "aaa".
 *
 * Text repeats its words, so each distinct piece is merged once per encode
 * call: the cache maps the piece's bytes to where its ids already sit in the
 * output array, and later occurrences copy them. The cache lives in the call's
 * context, not in the tokenizer, so a tokenizer stays immutable and shareable
 * between threads. */
#include <stdlib.h>
#include <string.h>

#include "coordinator/tokenizer/tok_internal.h"

typedef struct tok_heap_entry {
    uint32_t rank;
    uint32_t pos;   /* index of the left symbol (its first byte in the piece) */
} tok_heap_entry_t;

/* Pieces longer than this are not cached: they rarely repeat, and a cache
 * entry would pin no memory but cost a hash of a long key for nothing. */
#define TOK_CACHE_MAX_PIECE 256

bool tok_ids_push(tok_ids_t *a, int32_t id) {
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        int32_t *v = realloc(a->v, cap * sizeof *v);
        if (!v) return false;
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = id;
    return true;
}

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the
 * other 68 (controls, space, 0x7f-0xa0, soft hyphen) are moved to U+0100.. in
 * byte order, so every byte is a visible character in vocab strings. */
static bool byte_is_printable(unsigned b) {
    return (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
}

uint32_t tok_byte_to_cp(uint8_t b) {
    if (byte_is_printable(b)) return b;
    uint32_t n = 0; /* rank of b among the non-printable bytes */
    for (unsigned x = 0; x < b; x++) n += !byte_is_printable(x);
    return 256 + n;
}

void tok_bytelevel_inverse(int16_t inv[TOK_BYTELEVEL_CP_END]) {
    for (uint32_t cp = 0; cp < TOK_BYTELEVEL_CP_END; cp++) inv[cp] = -1;
    for (unsigned b = 0; b < 256; b++) inv[tok_byte_to_cp((uint8_t)b)] = (int16_t)b;
}

/* ---- scratch ---- */

static bool ctx_reserve(tok_bpe_ctx_t *c, size_t n) {
    if (n <= c->cap) return true;
    size_t cap = c->cap ? c->cap : 64;
    while (cap < n) cap *= 2;
    int32_t *sym = realloc(c->sym, cap * sizeof *sym);
    if (sym) c->sym = sym;
    int32_t *prev = realloc(c->prev, cap * sizeof *prev);
    if (prev) c->prev = prev;
    int32_t *next = realloc(c->next, cap * sizeof *next);
    if (next) c->next = next;
    tok_heap_entry_t *heap = realloc(c->heap, cap * sizeof *heap);
    if (heap) c->heap = heap;
    if (!sym || !prev || !next || !heap) return false;
    c->cap = cap;
    return true;
}

void tok_bpe_ctx_free(tok_bpe_ctx_t *c) {
    tok_strmap_free(&c->cache);
    free(c->sym);
    free(c->prev);
    free(c->next);
    free(c->heap);
    c->sym = c->prev = c->next = NULL;
    c->heap = NULL;
    c->cap = 0;
}

/* ---- min-heap of candidate merges ---- */

static bool heap_less(tok_heap_entry_t a, tok_heap_entry_t b) {
    return a.rank < b.rank || (a.rank == b.rank && a.pos < b.pos);
}

static void heap_push(tok_heap_entry_t *h, size_t *n, tok_heap_entry_t e) {
    size_t i = (*n)++;
    while (i > 0 && heap_less(e, h[(i - 1) / 2])) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = e;
}

static tok_heap_entry_t heap_pop(tok_heap_entry_t *h, size_t *n) {
    tok_heap_entry_t top = h[0], last = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && heap_less(h[c + 1], h[c])) c++;
        if (!heap_less(h[c], last)) break;
        h[i] = h[c];
        i = c;
    }
    if (*n) h[i] = last;
    return top;
}

/* Rank and merged id of the pair (a, b), if it merges. */
static bool merge_of(const tokenizer_t *t, int32_t a, int32_t b, uint32_t *rank, int32_t *merged) {
    uint64_t v;
    if (!tok_u64map_get(&t->merges, (uint64_t)(uint32_t)a << 32 | (uint32_t)b, &v)) return false;
    *rank = (uint32_t)(v >> 32);
    *merged = (int32_t)(uint32_t)v;
    return true;
}

/* Queue the pair starting at symbol `pos` (if it has a right neighbour and a merge). */
static void push_pair(tok_bpe_ctx_t *c, size_t *hn, int32_t pos) {
    if (pos < 0 || c->next[pos] < 0) return;
    uint32_t rank;
    int32_t merged;
    if (merge_of(c->t, c->sym[pos], c->sym[c->next[pos]], &rank, &merged))
        heap_push(c->heap, hn, (tok_heap_entry_t){rank, (uint32_t)pos});
}

/* Merge the symbols of s[0..n) in place; the result is the live symbols from 0. */
static void merge_all(tok_bpe_ctx_t *c, const unsigned char *s, size_t n) {
    const tokenizer_t *t = c->t;
    for (size_t i = 0; i < n; i++) {
        c->sym[i] = t->byte_id[s[i]];
        c->prev[i] = (int32_t)i - 1;
        c->next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    /* At most n-1 pairs are live at once and each merge removes one symbol
     * while adding at most two entries, but stale entries stay until popped:
     * n-1 initial + 2 per merge (n-1 merges) < 3n, so grow the heap to 3n. */
    size_t hn = 0;
    for (size_t i = 0; i + 1 < n; i++) push_pair(c, &hn, (int32_t)i);
    while (hn) {
        tok_heap_entry_t e = heap_pop(c->heap, &hn);
        int32_t pos = (int32_t)e.pos, right = c->next[pos];
        uint32_t rank;
        int32_t merged;
        if (c->sym[pos] < 0 || right < 0) continue;
        if (!merge_of(t, c->sym[pos], c->sym[right], &rank, &merged) || rank != e.rank) continue;
        c->sym[pos] = merged;
        c->sym[right] = -1;
        c->next[pos] = c->next[right];
        if (c->next[right] >= 0) c->prev[c->next[right]] = pos;
        push_pair(c, &hn, c->prev[pos]);
        push_pair(c, &hn, pos);
    }
}

/* Uncached path: BPE the piece and append its ids. */
static bool bpe_uncached(tok_bpe_ctx_t *c, const char *piece, size_t n) {
    const tokenizer_t *t = c->t;
    uint64_t whole;
    if (t->ignore_merges && tok_strmap_get(&t->raw_vocab, piece, n, &whole)) return tok_ids_push(c->out, (int32_t)whole);
    if (n == 1) return tok_ids_push(c->out, t->byte_id[(unsigned char)piece[0]]);
    if (!ctx_reserve(c, 3 * n)) return false;
    merge_all(c, (const unsigned char *)piece, n);
    for (int32_t i = 0; i >= 0; i = c->next[i])
        if (!tok_ids_push(c->out, c->sym[i])) return false;
    return true;
}

bool tok_bpe_piece(tok_bpe_ctx_t *c, const char *piece, size_t n) {
    if (n == 0) return true;
    if (n > TOK_CACHE_MAX_PIECE) return bpe_uncached(c, piece, n);
    uint64_t hit;
    if (tok_strmap_get(&c->cache, piece, n, &hit)) {
        size_t pos = (size_t)(hit >> 24), count = (size_t)(hit & 0xffffff);
        for (size_t i = 0; i < count; i++)
            if (!tok_ids_push(c->out, c->out->v[pos + i])) return false;
        return true;
    }
    size_t start = c->out->n;
    if (!bpe_uncached(c, piece, n)) return false;
    uint64_t entry = (uint64_t)start << 24 | (uint64_t)(c->out->n - start);
    return tok_strmap_put(&c->cache, piece, n, entry);
}
