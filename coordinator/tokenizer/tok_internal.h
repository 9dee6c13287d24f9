/* tok_internal.h - the tokenizer's private data layout, shared by its files:
 *   tok_load.c    tokenizer.json / tokenizer_config.json -> struct tokenizer
 *   tok_tables.c  lookup tables derived at load (matchers, decoded bytes)
 *   tok_pretok.c  added-token cutting, regex splitting
 *   tok_bpe.c     byte-level BPE merging of one piece, with a per-call cache
 *   tokenizer.c   the public API (encode/decode/lookups) and utf8_stream
 * Nothing here is part of the public API (see tokenizer.h). */
#ifndef SPEX_TOK_INTERNAL_H
#define SPEX_TOK_INTERNAL_H

#include <oniguruma.h>

#include "coordinator/tokenizer/tok_map.h"
#include "coordinator/tokenizer/tokenizer.h"
#include "core/utf8.h"   /* utf8_valid_len, utf8_decode: the strict UTF-8 rules */

/* One added token ("added_tokens" in tokenizer.json). */
typedef struct tok_added {
    const char *content; /* into tokenizer.strings */
    uint32_t len;
    int32_t id;
    bool special, lstrip, rstrip, single_word, normalized;
} tok_added_t;

/* Leftmost-longest matcher over one group of added tokens. Instead of an
 * Aho-Corasick automaton: a first-byte filter, then one hash lookup per
 * distinct token length (longest first). With a few dozen distinct lengths and
 * added tokens that start with rare bytes like '<', that is cheap. */
typedef struct tok_matcher {
    tok_strmap_t map;  /* content -> index into tokenizer.added */
    uint32_t *lens;    /* distinct content lengths, descending */
    size_t n_lens;
    bool first[256];   /* bytes that start some content */
} tok_matcher_t;

/* One splitting step of the pre-tokenizer (Split, or ByteLevel's own regex). */
typedef struct tok_split {
    regex_t *re;       /* NULL for a literal pattern */
    char *literal;     /* pattern.String, malloc'ed */
    size_t literal_len;
} tok_split_t;

struct tokenizer {
    int32_t vocab_size;      /* highest id + 1 */
    char *strings;           /* arena: vocab keys, added token contents */
    tok_strmap_t vocab;      /* byte-level string (as in tokenizer.json) -> id */
    tok_u64map_t merges;     /* left id << 32 | right id  ->  rank << 32 | merged id */
    int32_t byte_id[256];    /* id of the one-byte token for each byte value */
    bool ignore_merges;      /* model.ignore_merges: whole-vocab pieces skip BPE */
    tok_strmap_t raw_vocab;  /* raw bytes -> id; only built when ignore_merges */

    char *bytes;             /* arena: every token's decoded bytes */
    uint64_t *bytes_off;     /* per id: offset << 32 | length; UINT64_MAX = no token */
    uint8_t *special;        /* per id: 1 if a special added token */

    tok_added_t *added;
    size_t n_added;
    tok_strmap_t added_ids;  /* content -> id (for tokenizer_token_id) */
    tok_matcher_t cut[2];    /* [0]: normalized=false tokens, [1]: normalized=true */

    tok_split_t *splits;     /* applied in order; then ByteLevel + BPE */
    size_t n_splits;

    int32_t bos_id, eos_id;
    bool add_bos;
};

/* A growable id array: the encode output. */
typedef struct tok_ids {
    int32_t *v;
    size_t n, cap;
} tok_ids_t;

bool tok_ids_push(tok_ids_t *a, int32_t id);

/* Scratch for BPE-merging pieces within one encode call. */
typedef struct tok_bpe_ctx {
    const tokenizer_t *t;
    tok_ids_t *out;
    tok_strmap_t cache;  /* piece bytes -> position << 24 | count of its ids in *out */
    int32_t *sym;        /* symbol ids; -1 once merged into the left neighbour */
    int32_t *prev, *next;
    struct tok_heap_entry *heap;
    size_t cap;          /* capacity of sym/prev/next/heap */
    OnigMatchParam *mp;  /* per-search retry limit, scaled to the subject (tok_pretok.c) */
} tok_bpe_ctx_t;

/* Append the ids of one piece (raw bytes; ByteLevel mapping is implicit) to
 * ctx->out. The piece's bytes must stay alive for the ctx's lifetime (they key
 * the cache). Returns false when out of memory. */
bool tok_bpe_piece(tok_bpe_ctx_t *ctx, const char *piece, size_t n);
void tok_bpe_ctx_free(tok_bpe_ctx_t *ctx);

/* Pre-tokenize and BPE-encode a span of text that holds no added token. */
int tok_pretok_encode(tok_bpe_ctx_t *ctx, OnigRegion *region, const char *s, size_t n, spex_err_t *err);

/* Cut added tokens out of s[0..n) with matcher group `group` (0, then 1), and
 * encode the rest: the whole encode after BOS. */
int tok_encode_span(tok_bpe_ctx_t *ctx, OnigRegion *region, int group, const char *s, size_t n,
                    spex_err_t *err);

/* The GPT-2 byte <-> unicode alphabet of ByteLevel. */
uint32_t tok_byte_to_cp(uint8_t b);
/* The alphabet's code points are all below this. */
#define TOK_BYTELEVEL_CP_END (256 + 68)
/* Fill inv[cp] = the byte that code point cp stands for, or -1 if cp is not
 * in the alphabet (a table: decoding every vocab string at load needs speed). */
void tok_bytelevel_inverse(int16_t inv[TOK_BYTELEVEL_CP_END]);

/* tok_tables.c: build t->cut from t->added; t->bytes/bytes_off/special (the
 * decoded bytes are at most strings_len, the size of t->strings); and
 * t->raw_vocab. */
int tok_build_matchers(tokenizer_t *t, spex_err_t *err);
int tok_build_bytes(tokenizer_t *t, size_t strings_len, spex_err_t *err);
int tok_build_raw_vocab(tokenizer_t *t, spex_err_t *err);

/* Compile a pre-tokenizer regex (Oniguruma syntax, UTF-8, as Hugging Face does). */
regex_t *tok_regex_compile(const char *pattern, size_t len, spex_err_t *err);

#endif
