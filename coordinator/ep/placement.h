/* placement.h - which worker rank(s) host each routed expert.
 *
 * A default table for every MoE layer (main and MTP), optionally overridden
 * per layer (EPLB derives one table per layer from measured load: eplb.h).
 * In a table, expert e lives on
 * hosts(e) = ranks[off[e] .. off[e+1]), ascending, each in 1 .. world-1
 * (rank 0 is the coordinator and hosts none). An expert on several ranks is
 * replicated: the coordinator sends (row, e) to hosts(e)[(row + c) % n_hosts(e)],
 * a deterministic choice that spreads a hot expert's rows over its replicas;
 * c counts the backend's calls (ep_backend.c), so one row (batch 1) also
 * alternates between replicas from step to step.
 *
 * Built-in policies over W = world - 1 worker ranks:
 *   contiguous (default): expert e -> rank 1 + e * W / E   (balanced blocks)
 *   round-robin:          expert e -> rank 1 + e mod W
 * A file (`--placement FILE`) gives the table as JSON, one entry per expert,
 * a rank or a list of ranks:
 *   {"placement": [1, 1, [1, 2], 2, ...]}
 * and optionally per-layer tables (version 2 of the format; files without
 * "layers" are the old format and mean the default table everywhere):
 *   {"world": 5, "placement": [default table],
 *    "layers": [{"layer": 1, "placement": [table of layer 1]}, ...]}
 * Layers without their own table use the default. Other keys are ignored
 * (`spex placement --from-stats` writes an "eplb" object describing the loads).
 * Every expert must be hosted; errors name the expert, the rank or the file.
 * A job may have more ranks than the table uses (world raised after building
 * it): those ranks host nothing and get no dispatches. */
#ifndef SPEX_PLACEMENT_H
#define SPEX_PLACEMENT_H

#include <stdbool.h>
#include <stdio.h>

#include "core/error.h"

typedef enum { PLACEMENT_CONTIGUOUS = 0, PLACEMENT_ROUND_ROBIN } placement_policy_t;

typedef struct placement_table {
    int *off;      /* [n_experts + 1] */
    int *ranks;    /* [off[n_experts]] */
} placement_table_t;

typedef struct placement {
    int n_experts, world;
    int *off;                    /* the default table: [n_experts + 1] */
    int *ranks;                  /* [off[n_experts]] */
    int n_layers;                /* slots in layer[] (0: one table for all layers) */
    placement_table_t *layer;    /* [n_layers]; off == NULL: that layer uses the default */
} placement_t;

placement_t *placement_balanced(int n_experts, int world, placement_policy_t policy, spex_err_t *err);
/* Parse the JSON table; `origin` names the source in errors. */
placement_t *placement_parse(const char *json, const char *origin, int n_experts, int world, spex_err_t *err);
placement_t *placement_load(const char *path, int n_experts, int world, spex_err_t *err);
void placement_free(placement_t *p);

/* Give layer `layer` its own table (hosts of expert e: ranks[off[e]..off[e+1]),
 * copied, each list ascending and unique, ranks in 1..world-1; checked). */
int placement_set_layer(placement_t *p, int layer, const int *off, const int *ranks, spex_err_t *err);

/* The highest layer with its own table, or -1 (checked against the model by its user). */
int placement_max_layer(const placement_t *p);

/* "contiguous" / "round-robin" -> policy; -1 with a message otherwise. */
int placement_policy_parse(const char *s, placement_policy_t *out, spex_err_t *err);

/* The table layer `layer` uses. */
static inline placement_table_t placement_table(const placement_t *p, int layer) {
    if (layer >= 0 && layer < p->n_layers && p->layer[layer].off) return p->layer[layer];
    return (placement_table_t){p->off, p->ranks};
}

/* The rank that computes expert e of layer `layer` for slot `slot` (the
 * caller's row index plus its rotation): hosts(e)[slot % n_hosts(e)]. */
static inline int placement_pick(const placement_t *p, int layer, int e, unsigned slot) {
    placement_table_t t = placement_table(p, layer);
    unsigned n = (unsigned)(t.off[e + 1] - t.off[e]);
    return t.ranks[t.off[e] + (n > 1 ? (int)(slot % n) : 0)];
}

/* Experts hosted on `rank` in any layer, ascending, into out[n_experts]; returns the count. */
int placement_rank_experts(const placement_t *p, int rank, int *out);
/* Experts hosted on `rank` in layer `layer`, ascending, into out[n_experts]. */
int placement_rank_layer_experts(const placement_t *p, int layer, int rank, int *out);

/* Human-readable table: one line per rank (its experts) and a summary; per
 * layer when layers have their own tables. */
void placement_print(const placement_t *p, FILE *f);

/* The same as JSON, one line: {"world":N,"placement":[[ranks of expert 0],...]}
 * plus "layers" when there are per-layer tables (what placement_parse reads
 * back); -1 when out of memory. */
int placement_print_json(const placement_t *p, FILE *f);

/* The JSON object of placement_print_json as a cJSON tree (caller deletes),
 * NULL when out of memory; declared as void * to keep cJSON out of this header. */
void *placement_to_cjson(const placement_t *p);

#endif
