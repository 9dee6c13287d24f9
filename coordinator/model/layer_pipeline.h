/* layer_pipeline.h - a step's rows through a run of decoder layers, in
 * micro-batches that overlap the routed experts' round trip.
 *
 * Each decoder layer runs in two stages per micro-batch:
 *   pre:  h += attn(norm(h)); xn = norm(h)
 *         dense layer: y = FFN(xn); MoE layer: router(xn), then the backend's
 *         begin() sends the rows to the experts (moe_backend.h)
 *   post: MoE layer: s = shared(xn) while the rows are away, then end():
 *         y = routed; y += s
 *         h += y
 * With two micro-batches (A: the first half of the rows, B: the rest) the
 * order is
 *   pre0 A, pre0 B, post0 A, pre1 A, post0 B, pre1 B, post1 A, pre2 A, ...
 * so while A's rows are with the workers the coordinator runs B's attention,
 * router and A's shared experts, and while B's are away A's next layer - the
 * two-batch overlap of SGLang / DeepSeek, MegaScale-Infer's ping-pong with m = 2.
 * One micro-batch (a single row, or overlap off) still runs its shared experts
 * during the round trip when overlap is on.
 *
 * Exactness: every kernel is row-independent and each row's routed + shared
 * sum is formed in the same order, so a row's bits do not depend on the split.
 * A sequence may be cut between A and B: A's rows enter its KV cache first, at
 * every layer, and B's attention reads them as it would in one batch. */
#ifndef SPEX_LAYER_PIPELINE_H
#define SPEX_LAYER_PIPELINE_H

#include "coordinator/model/model.h"

/* h[n, hidden] through layers[0 .. count) (decoder layer indices first ..
 * first + count), the rows split into seqs as for model_forward. Overlap when
 * n >= m->overlap_min_rows > 0: two micro-batches (one for a single row, which
 * still runs its shared experts during the round trip); without, one
 * micro-batch in the plain order. On failure no routed call is left in flight. */
int layers_forward(model_t *m, const decoder_layer_t *layers, int first, int count, float *h, const mla_seq_t *seqs,
                   int n_seqs, int n, spex_err_t *err);

/* Whether a step of n rows overlaps, and in how many micro-batches. */
bool layers_overlap(const model_t *m, int n);
int layers_micro_batches(const model_t *m, int n);

#endif
