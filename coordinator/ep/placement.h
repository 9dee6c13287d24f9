/* placement.h - which worker rank(s) host each routed expert.
 *
 * One table for every MoE layer (main and MTP): expert e lives on
 * hosts(e) = ranks[off[e] .. off[e+1]), ascending, each in 1 .. world-1
 * (rank 0 is the coordinator and hosts none). An expert on several ranks is
 * replicated: the coordinator sends (row, e) to hosts(e)[row % n_hosts(e)], a
 * deterministic choice that spreads a hot expert's rows over its replicas.
 *
 * Built-in policies over W = world - 1 worker ranks:
 *   contiguous (default): expert e -> rank 1 + e * W / E   (balanced blocks)
 *   round-robin:          expert e -> rank 1 + e mod W
 * A file (`--placement FILE`) gives the table as JSON, one entry per expert,
 * a rank or a list of ranks:
 *   {"placement": [1, 1, [1, 2], 2, ...]}
 * Every expert must be hosted; errors name the expert, the rank or the file.
 * A job may have more ranks than the table uses (world raised after building
 * it): those ranks host nothing and get no dispatches. */
#ifndef SPEX_PLACEMENT_H
#define SPEX_PLACEMENT_H

#include <stdbool.h>
#include <stdio.h>

#include "core/error.h"

typedef enum { PLACEMENT_CONTIGUOUS = 0, PLACEMENT_ROUND_ROBIN } placement_policy_t;

typedef struct placement {
    int n_experts, world;
    int *off;      /* [n_experts + 1] */
    int *ranks;    /* [off[n_experts]] */
} placement_t;

placement_t *placement_balanced(int n_experts, int world, placement_policy_t policy, spex_err_t *err);
/* Parse the JSON table; `origin` names the source in errors. */
placement_t *placement_parse(const char *json, const char *origin, int n_experts, int world, spex_err_t *err);
placement_t *placement_load(const char *path, int n_experts, int world, spex_err_t *err);
void placement_free(placement_t *p);

/* "contiguous" / "round-robin" -> policy; -1 with a message otherwise. */
int placement_policy_parse(const char *s, placement_policy_t *out, spex_err_t *err);

/* The rank that computes expert e for token row `row`. */
static inline int placement_pick(const placement_t *p, int e, int row) {
    int n = p->off[e + 1] - p->off[e];
    return p->ranks[p->off[e] + (n > 1 ? row % n : 0)];
}

/* Experts hosted on `rank`, ascending, into out[n_experts]; returns the count. */
int placement_rank_experts(const placement_t *p, int rank, int *out);

/* Human-readable table: one line per rank (its experts) and a summary. */
void placement_print(const placement_t *p, FILE *f);

/* The same as JSON, one line: {"world":N,"placement":[[ranks of expert 0],...]}
 * (what placement_parse reads back); -1 when out of memory. */
int placement_print_json(const placement_t *p, FILE *f);

#endif
