/* ep_stats.h - what expert parallelism costs: bytes, messages, time, load.
 *
 * Kept by the coordinator's EP backend (ep_backend.h), per MoE layer and per
 * worker rank:
 *   raw bytes  = the f32 rows / vectors that had to travel (rows x hidden x 4)
 *   wire bytes = the frames actually sent (protobuf header + encoded payload)
 *   time on the coordinator: dispatch (route, encode, send), wait (for the
 *   answers: worker compute + transfer), combine (decode, sum), and "other"
 *   (everything outside the routed experts: attention, dense and shared FFN,
 *   router, head, sampling) = wall time since the session began - the rest;
 *   per rank: worker decode / expert compute / encode seconds it reported;
 *   expert = per call the slowest rank's compute, summed (the critical path).
 *   load: tokens routed to each expert of each layer (max/mean = imbalance),
 *   and (row, expert) pairs computed by each rank in each layer (the busiest
 *   rank sets the layer's time; `spex placement --from-stats` balances it).
 *   overlap: how much of the expert round trip the coordinator spent computing
 *   (other micro-batches' attention, routers, shared experts) rather than
 *   blocked waiting: per call, comm = last dispatch frame sent (or the previous
 *   call's answers in, if later: a worker serves calls in turn) -> last answer
 *   in (decoding excluded), hidden = comm - the time blocked on the link
 *   (in-process loopback workers run inside the wait: hidden 0). */
#ifndef SPEX_EP_STATS_H
#define SPEX_EP_STATS_H

#include <stdint.h>
#include <stdio.h>

#include "core/clock.h"
#include "core/error.h"

typedef struct ep_io {
    int64_t messages, raw_bytes, wire_bytes;
} ep_io_t;

typedef struct ep_layer_stats {
    int64_t calls, rows, pairs;        /* routed() calls, token rows, (row, expert) pairs */
    ep_io_t dispatch, combine;
    double t_dispatch, t_wait, t_combine, t_expert;
} ep_layer_stats_t;

typedef struct ep_rank_stats {
    int64_t rows, pairs, experts_hosted;
    ep_io_t dispatch, combine;          /* to / from this rank */
    double t_decode, t_compute, t_encode;
    /* from the worker's stats message at the end (0 if never fetched) */
    int64_t weight_bytes, max_rss_bytes;
    double busy_seconds, idle_seconds;
} ep_rank_stats_t;

typedef struct ep_overlap {
    int64_t calls;
    int micro_batches;                  /* most calls in flight at once (1: no micro-batch overlap) */
    double comm_seconds, hidden_seconds;
} ep_overlap_t;

typedef struct ep_stats {
    int n_layers, n_experts, world;
    char dispatch_codec[32], combine_codec[32], combine_mode[16];
    ep_layer_stats_t *layer;            /* [n_layers] */
    ep_rank_stats_t *rank;              /* [world] (rank 0 unused) */
    int64_t *tokens;                    /* [n_layers * n_experts] */
    int64_t *rank_pairs;                /* [n_layers * world] pairs each rank computed per layer */
    ep_overlap_t overlap;
    double t_begin, t_end;              /* spex_now() at creation / last update */
} ep_stats_t;

ep_stats_t *ep_stats_create(int n_layers, int n_experts, int world, spex_err_t *err);
void ep_stats_free(ep_stats_t *s);

/* Totals over layers. */
ep_layer_stats_t ep_stats_total(const ep_stats_t *s);
/* What the counters of b added since a (a benchmark phase's own share). */
ep_layer_stats_t ep_layer_stats_delta(ep_layer_stats_t a, ep_layer_stats_t b);

/* The whole record as JSON (totals, per layer, per rank, expert load). */
int ep_stats_write_json(const ep_stats_t *s, const char *path, spex_err_t *err);
/* The same JSON object as one line of text (caller frees), or NULL if out of memory. */
char *ep_stats_json_text(const ep_stats_t *s);

/* A summary table (totals, per rank, load) for stderr. */
void ep_stats_print(const ep_stats_t *s, FILE *f);

#endif
