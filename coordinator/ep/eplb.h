/* eplb.h - expert-parallel load balancing: a placement derived from measured
 * expert load, as DeepSeek's EPLB does it.
 *
 * Input: tokens routed to each expert of each MoE layer (from an --ep-stats
 * file: eplb_load.h), the world size, R redundant expert slots per layer, and
 * the placement the result must not be worse than (the default table).
 * Per measured layer, with W = world - 1 worker ranks and E experts:
 *   1. replicas: every expert starts with one; R times, give one more to the
 *      expert with the highest load per replica (load / replicas), at most W
 *      replicas each (they must sit on distinct ranks);
 *   2. packing: E + R replicas, each carrying load / replicas, heaviest first,
 *      each to the least-loaded rank that does not host that expert yet and has
 *      room (ceil((E + R) / W) slots per rank, so memory stays balanced too);
 *   3. if the expected busiest rank is not below the base placement's for that
 *      layer, the layer keeps the base table (so the result is never worse).
 * Expected rank load = sum over its replicas of load(e) / replicas(e), which
 * is what the coordinator's deterministic choice hosts(e)[row % n] gives on
 * average. Ties break by expert id then rank id: the same input always gives
 * the same placement. */
#ifndef SPEX_EPLB_H
#define SPEX_EPLB_H

#include <stdbool.h>

#include "coordinator/ep/eplb_load.h"
#include "coordinator/ep/placement.h"
#include "core/error.h"

/* Expected (row, expert) pairs per rank of one layer under p: rank_load[world]
 * (rank 0 stays 0); returns the busiest rank's, *mean = the mean over workers. */
double eplb_rank_load(const placement_t *p, int layer, const double *tokens, double *rank_load, double *mean);

/* The largest R a job of `world` ranks can place for E experts: E * (W - 1). */
int eplb_max_redundant(int n_experts, int world);

/* A placement with base's default table and one table per measured layer
 * (steps above). Errors: R out of range (naming the limit), a load of
 * another shape than base. */
placement_t *eplb_derive(const eplb_load_t *load, const placement_t *base, int redundant, spex_err_t *err);

#endif
