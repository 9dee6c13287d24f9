/* ep_backend.h - the routed experts on worker ranks: dispatch and combine.
 *
 * A moe_backend_t (moe_backend.h) that, for each MoE layer call:
 *   1. picks the rank of every (row, expert) pair from the placement (replicas
 *      by row index) and groups the rows by rank: a row goes at most once to a
 *      rank, with the ids and gate weights of its experts there;
 *   2. encodes each rank's rows with the dispatch codec and sends a dispatch
 *      frame (transport/wire.h) over the link;
 *   3. waits (bounded by rank_timeout) for every rank's combine frame (a
 *      non-finite value in it is an error naming the rank and layer), and
 *   4. sums:
 *      EP_COMBINE_EXPERT: the worker returned w * expert(x) per (row, expert);
 *        each row adds its k vectors to zero in ascending expert id - exactly
 *        the single-process order, so with a lossless codec the result is the
 *        same bits for ANY placement (replicas, uneven shares).
 *      EP_COMBINE_PRESUM: the worker returned one vector per row (its experts
 *        summed, DeepEP normal mode); rows add their ranks' vectors in ascending
 *        rank. Fewer bytes (one vector per row and rank, not per pair), but float
 *        addition is not associative, so bits depend on the placement.
 * The link is any transport/link.h (MPI or in-process loopback); every message
 * on it is sent and awaited by coordinator/ep/ep_protocol.h, which this file only
 * feeds rows and reads answers from. Creating the backend is the handshake:
 * every worker rank gets a hello with the model identity, its experts and the
 * codecs, and must accept it; destroying it says bye (the end of the session,
 * not of the job: see ep_protocol_end_job). */
#ifndef SPEX_EP_BACKEND_H
#define SPEX_EP_BACKEND_H

#include <stdint.h>

#include "core/config.h"
#include "coordinator/ep/ep_stats.h"
#include "coordinator/ep/placement.h"
#include "coordinator/model/moe_backend.h"
#include "transport/codec.h"
#include "transport/link.h"

typedef enum { EP_COMBINE_EXPERT = 0, EP_COMBINE_PRESUM = 1 } ep_combine_t;

typedef struct ep_options {
    codec_t dispatch, combine;   /* payload codecs */
    ep_combine_t mode;
    double rank_timeout;         /* s to wait for a worker's answer (silence while it loads experts) */
    /* [n_layers * n_routed] content digests for the hello (ep_protocol.h), read
     * only while the backend is created; NULL: worker contents not checked. */
    const uint64_t *expert_digests;
} ep_options_t;

/* Takes ownership of `pl` and `link` (also on failure). `cleanup(cleanup_user)`
 * runs after the link is destroyed (the loopback's in-process workers). */
moe_backend_t *ep_backend_create(const spex_config_t *cfg, uint64_t model_id, placement_t *pl, link_t *link,
                                 const ep_options_t *o, void (*cleanup)(void *), void *cleanup_user,
                                 spex_err_t *err);

/* The first worker failure (ep_protocol_failure: message, rank, cause), kept
 * once the protocol broke; NULL while it works or if `b` is not an EP backend. */
const char *ep_backend_failure(moe_backend_t *b, int *rank, const char **cause);

/* The statistics so far; NULL if `b` is not an EP backend. */
ep_stats_t *ep_backend_stats(moe_backend_t *b);

/* Ask every worker for its totals (resident weights, peak RSS, busy time) and
 * put them into the statistics. */
int ep_backend_fetch_worker_stats(moe_backend_t *b, spex_err_t *err);

#endif
