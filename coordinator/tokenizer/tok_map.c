/* tok_map.c - see tok_map.h: open-addressing hash maps for the tokenizer. */
#include "coordinator/tokenizer/tok_map.h"

#include <stdlib.h>
#include <string.h>

/* Final avalanche of MurmurHash3: every input bit affects every output bit,
 * which linear probing needs (it uses the low bits directly). */
static uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

/* Eight bytes per step instead of FNV's one: pieces of text are hashed once
 * per encode, so this is on the hot path. */
uint64_t tok_hash_bytes(const char *s, size_t len) {
    uint64_t h = 0x9e3779b97f4a7c15ULL ^ (len * 0x100000001b3ULL);
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        h = (h ^ mix64(w)) * 0x9fb21c651e98df25ULL;
    }
    if (i < len) { /* guard: s may be NULL when len == 0 */
        uint64_t tail = 0;
        memcpy(&tail, s + i, len - i);
        h ^= tail;
    }
    return mix64(h);
}

/* ---- tok_strmap ---- */

void tok_strmap_free(tok_strmap_t *m) {
    free(m->slots);
    memset(m, 0, sizeof *m);
}

/* Slot where `key` is or would go. The table is never full (load <= 1/2). */
static size_t strmap_find(const tok_strmap_slot_t *slots, size_t cap, const char *key, uint32_t len,
                          uint64_t h) {
    size_t mask = cap - 1, i = (size_t)h & mask;
    uint32_t h32 = (uint32_t)(h >> 32);
    while (slots[i].key) {
        if (slots[i].hash32 == h32 && slots[i].len == len && !memcmp(slots[i].key, key, len)) return i;
        i = (i + 1) & mask;
    }
    return i;
}

static bool strmap_grow(tok_strmap_t *m) {
    size_t cap = m->cap ? m->cap * 2 : 64;
    tok_strmap_slot_t *slots = calloc(cap, sizeof *slots);
    if (!slots) return false;
    for (size_t i = 0; i < m->cap; i++) {
        const tok_strmap_slot_t *s = &m->slots[i];
        if (!s->key) continue;
        /* Rehash from the stored bits would lose the low half; recompute. */
        uint64_t h = tok_hash_bytes(s->key, s->len);
        slots[strmap_find(slots, cap, s->key, s->len, h)] = *s;
    }
    free(m->slots);
    m->slots = slots;
    m->cap = cap;
    return true;
}

bool tok_strmap_put(tok_strmap_t *m, const char *key, size_t len, uint64_t value) {
    if (len > UINT32_MAX) return false;
    if ((m->count + 1) * 2 > m->cap && !strmap_grow(m)) return false;
    uint64_t h = tok_hash_bytes(key, len);
    size_t i = strmap_find(m->slots, m->cap, key, (uint32_t)len, h);
    if (!m->slots[i].key) {
        m->slots[i] = (tok_strmap_slot_t){key, (uint32_t)len, (uint32_t)(h >> 32), value};
        m->count++;
    } else {
        m->slots[i].value = value;
    }
    return true;
}

bool tok_strmap_get(const tok_strmap_t *m, const char *key, size_t len, uint64_t *value) {
    if (!m->cap || len > UINT32_MAX) return false;
    size_t i = strmap_find(m->slots, m->cap, key, (uint32_t)len, tok_hash_bytes(key, len));
    if (!m->slots[i].key) return false;
    *value = m->slots[i].value;
    return true;
}

/* ---- tok_u64map ---- */

void tok_u64map_free(tok_u64map_t *m) {
    free(m->keys);
    free(m->values);
    memset(m, 0, sizeof *m);
}

static size_t u64map_find(const uint64_t *keys, size_t cap, uint64_t key) {
    size_t mask = cap - 1, i = (size_t)mix64(key) & mask;
    while (keys[i] != TOK_U64MAP_EMPTY && keys[i] != key) i = (i + 1) & mask;
    return i;
}

static bool u64map_rehash(tok_u64map_t *m, size_t cap) {
    uint64_t *keys = malloc(cap * sizeof *keys), *values = malloc(cap * sizeof *values);
    if (!keys || !values) {
        free(keys);
        free(values);
        return false;
    }
    memset(keys, 0xff, cap * sizeof *keys); /* all TOK_U64MAP_EMPTY */
    for (size_t i = 0; i < m->cap; i++) {
        if (m->keys[i] == TOK_U64MAP_EMPTY) continue;
        size_t j = u64map_find(keys, cap, m->keys[i]);
        keys[j] = m->keys[i];
        values[j] = m->values[i];
    }
    free(m->keys);
    free(m->values);
    m->keys = keys;
    m->values = values;
    m->cap = cap;
    return true;
}

bool tok_u64map_reserve(tok_u64map_t *m, size_t n) {
    size_t cap = m->cap ? m->cap : 64;
    while (cap < n * 2) cap *= 2;
    return cap == m->cap || u64map_rehash(m, cap);
}

bool tok_u64map_put(tok_u64map_t *m, uint64_t key, uint64_t value) {
    if (key == TOK_U64MAP_EMPTY) return false;
    if ((m->count + 1) * 2 > m->cap && !u64map_rehash(m, m->cap ? m->cap * 2 : 64)) return false;
    size_t i = u64map_find(m->keys, m->cap, key);
    if (m->keys[i] == TOK_U64MAP_EMPTY) {
        m->keys[i] = key;
        m->count++;
    }
    m->values[i] = value;
    return true;
}

bool tok_u64map_get(const tok_u64map_t *m, uint64_t key, uint64_t *value) {
    if (!m->cap || key == TOK_U64MAP_EMPTY) return false;
    size_t i = u64map_find(m->keys, m->cap, key);
    if (m->keys[i] == TOK_U64MAP_EMPTY) return false;
    *value = m->values[i];
    return true;
}
