/* prefix_cache.h - a radix tree of token prefixes holding their latent KV rows
 * (RadixAttention, as in SGLang), so a prompt that starts like an earlier one
 * (the same system prompt, the earlier turns of a chat) skips recomputing it.
 *
 * Keys are blocks of PREFIX_BLOCK tokens: a node is one block, its path from
 * the root the tokens before it; a leaf may hold fewer (a prompt's or an
 * answer's tail), and grows in place when a longer prompt with the same
 * tokens is inserted. Matching is token by token: a prompt takes every leading
 * token it shares with a node, whole block or not (a chat's next turn reuses
 * the previous answer up to its last computed token, not up to its last whole
 * block). A node holds, for each of its positions, the
 * cache row [c_kv | k_pe] of every main layer, and of every MTP layer for the
 * leading positions whose MTP row is canonical (computed from the main hidden
 * state h_t and token t+1, as kv_cache.h's invariant says).
 *
 * Why results do not change: every row of the KV cache is a function of the
 * tokens before it only, computed by row-independent kernels (decode equals
 * prefill to the bit), so a restored row is the row a prefill would compute.
 * At most n-1 of a prompt's n tokens are restored: the last one's logits pick
 * the first token. With MTP rows, restoring L matched tokens puts back rows
 * [0, L-1) and leaves token L-1 to the prefill too: its hidden state (not
 * stored) feeds the MTP row at L-1. Without, all L rows come back.
 *
 * Entries are copied in and out (an MLA row is kv_lora + rope floats per
 * layer: cheap), evicted least-recently-used leaf first within max_bytes.
 * Used by the engine thread only (no locking). */
#ifndef SPEX_PREFIX_CACHE_H
#define SPEX_PREFIX_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "coordinator/model/kv_cache.h"
#include "core/error.h"

enum { PREFIX_BLOCK = 16 };

typedef struct prefix_cache prefix_cache_t;

typedef struct prefix_cache_stats {
    uint64_t lookups, hits;       /* restores asked / that found at least one block */
    uint64_t hit_tokens;          /* prompt tokens not recomputed */
    uint64_t inserted_blocks, evicted_blocks;
    size_t bytes, max_bytes;      /* held / allowed */
} prefix_cache_stats_t;

/* A cache for sequences with n_main main layers and n_mtp MTP layers of
 * `width` floats per row (kv_cache_t's layout), holding at most max_bytes.
 * With MTP layers, nodes also keep `hidden` floats per position: the main
 * model's last hidden state h_t, which a request without speculation stores
 * instead of the MTP rows it never computed, so that a speculative request
 * can compute those rows (one MTP layer over the restored positions) instead
 * of the whole model (0: none). */
prefix_cache_t *prefix_cache_create(int n_main, int n_mtp, int width, int hidden, size_t max_bytes, spex_err_t *err);
void prefix_cache_free(prefix_cache_t *pc);

/* Put the longest cached prefix of tokens[0, n) (L tokens, at most n-1) into
 * an empty kv: rows [0, L) of the main layers; with_mtp,
 * rows [0, L-1) of the main and the MTP layers (then only positions with their
 * MTP rows, and the one after them, match). Returns the rows restored, the prompt tokens now cached (0 on a
 * miss). */
int prefix_cache_restore(prefix_cache_t *pc, const int32_t *tokens, int n, kv_cache_t *kv, int with_mtp);

/* The same, also giving back held hidden states (hidden: [n, hidden] or
 * NULL): rows for positions [*h0, *h1) go to hidden rows 0.. . with_mtp: the
 * MTP rows come back for [0, m0) only (kv's MTP length), and a position from
 * m0 on matches when its hidden state is held: [*h0, *h1) = [m0, rows
 * restored), whose MTP rows the caller computes. Without: [0, *h1), the held
 * leading run. */
int prefix_cache_restore_hidden(prefix_cache_t *pc, const int32_t *tokens, int n, kv_cache_t *kv, int with_mtp,
                                float *hidden, int *h0, int *h1);

/* Remember the tokens[0, n) whose main rows kv holds
 * (positions < kv->len[0]); MTP rows for positions < mtp_rows, of EVERY MTP
 * layer (a restore puts them all back: a caller that ran only some MTP
 * modules, as a sequence with spec_k below the module count, passes 0). */
void prefix_cache_insert(prefix_cache_t *pc, const int32_t *tokens, int n, const kv_cache_t *kv, int mtp_rows);
/* The same with the hidden states of positions [hid_from, hid_to) (hidden:
 * [*, hidden], row = position); a node takes those that extend the leading
 * run it holds. */
void prefix_cache_insert_hidden(prefix_cache_t *pc, const int32_t *tokens, int n, const kv_cache_t *kv, int mtp_rows,
                                const float *hidden, int hid_from, int hid_to);

prefix_cache_stats_t prefix_cache_stats(const prefix_cache_t *pc);

#endif
