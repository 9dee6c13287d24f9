/* eplb_load.h - measured expert load, read from an --ep-stats file, for
 * load balancing (eplb.h).
 *
 * Reads "expert_load": [{"layer": L, "tokens_per_expert": [E counts]}, ...]
 * from the statistics JSON (ep_stats.h), at the top level or inside
 * "expert_parallelism" (where `generate --stats` puts it), and checks it is
 * this model's: every layer a MoE layer of the model, E its routed experts.
 * Errors name the file and the field: `stats 'ep.json': expert_load[0].
 * tokens_per_expert has 32 entries, the model has 16 routed experts (stats of
 * another model?)`. */
#ifndef SPEX_EPLB_LOAD_H
#define SPEX_EPLB_LOAD_H

#include <stdbool.h>

#include "core/config.h"
#include "core/error.h"

typedef struct eplb_load {
    int n_layers, n_experts;
    double *tokens;   /* [n_layers * n_experts] tokens routed to each expert */
    bool *measured;   /* [n_layers] the layer has a load record */
} eplb_load_t;

/* Parse JSON text; `origin` names it in errors. 0 or -1. */
int eplb_load_parse(const char *json, const char *origin, const spex_config_t *cfg, eplb_load_t *out,
                    spex_err_t *err);
int eplb_load_read(const char *path, const spex_config_t *cfg, eplb_load_t *out, spex_err_t *err);
void eplb_load_free(eplb_load_t *l);

#endif
