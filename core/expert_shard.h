/* expert_shard.h - the routed experts one process hosts, applied to rows in
 * the wire's own shape.
 *
 * A shard holds a set of expert ids for every MoE layer of a checkpoint (all
 * of them in a single process, a placement's share on a worker rank), as
 * weight views into the mmap'ed safetensors, so a rank touches only its
 * experts' byte ranges. Rows arrive as DeepEP-style CSR routing: x[n, hidden]
 * and, per row, a run of (expert id, gate weight) pairs ascending by id. The
 * shard computes one vector per pair,
 *     each[p] = w_p * expert_{e_p}(x[row of p])                [pairs, hidden]
 * or their per-row sums in ascending expert order, which is bit for bit what
 * the coordinator gets by adding the per-pair vectors of any number of ranks
 * in that order - how lossless expert parallelism stays identical to one
 * process for every placement.
 *
 * Each expert runs once over all rows routed to it. With several experts busy
 * and a multi-thread pool, experts are spread over the threads (an expert's
 * rows stay on one thread, its products are computed by core/matmul.h, whose
 * results do not depend on which thread or batch computes them). Scratch is
 * owned by the shard and only grows, so steady-state calls allocate nothing. */
#ifndef SPEX_EXPERT_SHARD_H
#define SPEX_EXPERT_SHARD_H

#include <stdbool.h>
#include <stdint.h>

#include "core/config.h"
#include "core/expert.h"

typedef struct expert_shard expert_shard_t;

/* CSR routing of n rows. */
typedef struct expert_rows {
    int n;
    const float *x;            /* [n, hidden] */
    const uint32_t *counts;    /* [n] pairs per row, or NULL: every row has k pairs */
    int k;
    const uint32_t *experts;   /* [pairs] expert ids, ascending within a row */
    const float *weights;      /* [pairs] gate weights */
} expert_rows_t;

/* Load experts ids[0..n_ids) (ascending, < n_routed_experts) of every MoE
 * layer (MTP layers included). progress(user, done, total) per expert loaded;
 * may be NULL. Errors name the tensor. */
expert_shard_t *expert_shard_create(const spex_config_t *cfg, const tensor_store_t *ts, const int *ids, int n_ids,
                                    void (*progress)(void *user, int done, int total), void *user,
                                    spex_err_t *err);
/* Per-layer sets: hosted[layer * n_routed_experts + e] (dense layers'
 * entries are ignored), for placements with a table per layer. */
expert_shard_t *expert_shard_create_layers(const spex_config_t *cfg, const tensor_store_t *ts, const bool *hosted,
                                           void (*progress)(void *user, int done, int total), void *user,
                                           spex_err_t *err);
void expert_shard_free(expert_shard_t *s);

/* Expert ids hosted in any layer (ascending) and their count; stored bytes of all of them. */
const int *expert_shard_ids(const expert_shard_t *s, int *n_ids);
/* [n_layers * n_routed_experts]: which (layer, expert) this shard holds (MoE layers only). */
const bool *expert_shard_hosted(const expert_shard_t *s);
uint64_t expert_shard_bytes(const expert_shard_t *s);

/* Pairs in r (sum of counts, or n * k). */
size_t expert_rows_pairs(const expert_rows_t *r);

/* Apply layer `layer`'s experts to r. sum == false: out[pairs, hidden] in pair
 * order; sum == true: out[n, hidden] (rows with no pair are zero).
 * tokens_per_expert[n_routed] (may be NULL) is incremented per pair computed.
 * Fails naming layer, row and expert when an id is not hosted here or a row's
 * ids are not ascending. */
int expert_shard_apply(expert_shard_t *s, const exec_t *ex, int layer, const expert_rows_t *r, bool sum,
                       float *out, int64_t *tokens_per_expert, spex_err_t *err);

#endif
