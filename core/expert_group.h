/* expert_group.h - run the routed experts of one MoE layer over a batch of rows.
 *
 * Input is DeepEP-style: rows x[n, hidden] and, per row, k (expert id, weight)
 * pairs sorted by expert id. Experts not present here (NULL) are skipped, which
 * is how a worker rank computes only its shard. Each expert runs as one GEMM
 * batch over the rows routed to it; results are accumulated into out[n, hidden]
 * (which must be zeroed by the caller or hold a partial sum) in ascending
 * expert order for every row, the order DeepSeek's reference uses. Experts use
 * the row-independent product (expert_forward_rows), so a row's result is the
 * same bits whichever other rows share its batch, rank or replica. */
#ifndef SPEX_EXPERT_GROUP_H
#define SPEX_EXPERT_GROUP_H

#include <stdint.h>
#include "core/expert.h"

typedef struct expert_group_stats {
    int64_t *tokens_per_expert;  /* [n_experts] incremented per assignment computed; may be NULL */
} expert_group_stats_t;

/* out[i] += sum over j of w[i,j] * experts[idx[i,j]](x[i]), for present experts.
 * Returns -1 only when out of memory. */
int expert_group_apply(expert_t *const *experts, int n_experts, const float *x, int n, int hidden, int k,
                       const int32_t *idx, const float *w, float *out, expert_group_stats_t *stats,
                       spex_err_t *err);

/* The same routing, without the sum: each[(i*k + j), hidden] = w[i,j] *
 * experts[idx[i,j]](x[i]) for present experts (other slots untouched; idx < 0
 * marks padding). Adding the slots of a row to a zeroed vector in ascending
 * expert id gives bit for bit what expert_group_apply() gives: this is how a
 * worker answers in COMBINE_EXPERT mode, so the coordinator can sum a row's
 * contributions from any number of ranks in the single-process order. */
int expert_group_apply_each(expert_t *const *experts, int n_experts, const float *x, int n, int hidden, int k,
                            const int32_t *idx, const float *w, float *each, expert_group_stats_t *stats,
                            spex_err_t *err);

#endif
