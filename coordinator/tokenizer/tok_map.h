/* tok_map.h - the two hash maps the tokenizer needs.
 *
 * tok_strmap: byte string -> uint64. Keys are NOT copied: the map stores a
 *   pointer + length, and the owner keeps the bytes alive (the tokenizer's
 *   string arena for the vocabulary, the caller's text for the per-call piece
 *   cache). This keeps the maps to one allocation each.
 * tok_u64map: uint64 -> uint64, used for BPE merges keyed by (left id, right id).
 *
 * Both use open addressing with linear probing in a power-of-two table kept at
 * most half full, so a lookup is usually one or two cache lines. There is no
 * deletion: the tokenizer only ever builds and queries. */
#ifndef SPEX_TOK_MAP_H
#define SPEX_TOK_MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct tok_strmap_slot {
    const char *key;  /* NULL = empty slot */
    uint32_t len;
    uint32_t hash32;  /* low bits of the hash, to skip most memcmp calls */
    uint64_t value;
} tok_strmap_slot_t;

typedef struct tok_strmap {
    tok_strmap_slot_t *slots;
    size_t cap;   /* power of two, or 0 before the first insert */
    size_t count;
} tok_strmap_t;

/* Maps start zeroed ({0}); no init call is needed. */
void tok_strmap_free(tok_strmap_t *m);
/* Insert or overwrite. Returns false only when out of memory (or len >= 4 GiB). */
bool tok_strmap_put(tok_strmap_t *m, const char *key, size_t len, uint64_t value);
/* Returns true and sets *value if the key is present. */
bool tok_strmap_get(const tok_strmap_t *m, const char *key, size_t len, uint64_t *value);

typedef struct tok_u64map {
    uint64_t *keys;    /* TOK_U64MAP_EMPTY = empty slot */
    uint64_t *values;
    size_t cap;
    size_t count;
} tok_u64map_t;

#define TOK_U64MAP_EMPTY UINT64_MAX /* the one key that cannot be stored */

void tok_u64map_free(tok_u64map_t *m);
/* Pre-size for n entries (optional; avoids rehashing while loading). */
bool tok_u64map_reserve(tok_u64map_t *m, size_t n);
bool tok_u64map_put(tok_u64map_t *m, uint64_t key, uint64_t value);
bool tok_u64map_get(const tok_u64map_t *m, uint64_t key, uint64_t *value);

/* The string hash used by tok_strmap, exposed for tests. */
uint64_t tok_hash_bytes(const char *s, size_t len);

#endif
