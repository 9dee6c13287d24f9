/* cmd_placement.c - `spex placement`: the expert -> rank table a job would use,
 * or one derived from measured load (EPLB, coordinator/ep/eplb.h).
 *
 *   spex placement --model DIR --np N [--placement FILE] [--placement-policy P] [--json]
 *                  [--from-stats FILE [--redundant R]]
 * N is the mpirun world size (rank 0 coordinates, ranks 1..N-1 host experts;
 * N = 1 means one in-process worker rank). Errors (an unhosted expert, a rank
 * outside the job) are the ones the job itself would report. With --from-stats
 * the table given by --placement / --placement-policy is the base the derived
 * one must beat, layer by layer; the expected busiest rank over the mean is
 * printed before and after (to stderr with --json). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_ep.h"
#include "cli/cli_util.h"
#include "cli/commands.h"
#include "coordinator/ep/eplb.h"
#include "coordinator/ep/placement.h"
#include "core/checkpoint.h"
#include "core/config.h"

typedef struct placement_cli {
    const char *dir, *from_stats;
    long np, redundant;
    bool json;
    cli_ep_t ep;   /* --placement, --placement-policy */
} placement_cli_t;

static const cli_option_t PLACEMENT_OPTIONS[] = {
    CLI_OPT_INT("--np", NULL, "N", placement_cli_t, np, 1, 4096, "the mpirun world size (required)"),
    CLI_OPT_FLAG("--json", placement_cli_t, json, "print the table as JSON"),
    CLI_OPT_STRING("--from-stats", "FILE", placement_cli_t, from_stats,
                   "derive a per-layer table from the expert load\nin an --ep-stats file (EPLB)"),
    CLI_OPT_INT("--redundant", NULL, "R", placement_cli_t, redundant, 0, 1 << 20,
                "with --from-stats: R replicas of the hottest\nexperts per layer (default 0)"),
};

/* Per measured layer: expected busiest rank / mean, base -> derived; JSON array into eplb (may be NULL). */
static void report_balance(const placement_t *base, const placement_t *p, const eplb_load_t *ld, FILE *f,
                           cJSON *layers) {
    double *rl = malloc(sizeof(double) * (size_t)p->world), mb = 0, md = 0, sm = 0;
    if (!rl) return;
    for (int l = 0; l < ld->n_layers; l++) {
        if (!ld->measured[l]) continue;
        const double *tok = ld->tokens + (size_t)l * ld->n_experts;
        double mean, b = eplb_rank_load(base, l, tok, rl, &mean), d = eplb_rank_load(p, l, tok, rl, &mean);
        fprintf(f, "layer %-3d busiest rank / mean: %.3f -> %.3f\n", l, mean > 0 ? b / mean : 0, mean > 0 ? d / mean : 0);
        mb += b, md += d, sm += mean;
        cJSON *o = layers ? cJSON_CreateObject() : NULL;
        if (!o) continue;
        cJSON_AddNumberToObject(o, "layer", l);
        cJSON_AddNumberToObject(o, "max_over_mean_before", mean > 0 ? b / mean : 0);
        cJSON_AddNumberToObject(o, "max_over_mean_after", mean > 0 ? d / mean : 0);
        cJSON_AddItemToArray(layers, o);
    }
    fprintf(f, "all layers (sum of busiest / sum of means): %.3f -> %.3f\n", sm > 0 ? mb / sm : 0, sm > 0 ? md / sm : 0);
    free(rl);
}

/* The derived table as JSON with an "eplb" object saying where it came from. */
static int print_derived_json(const placement_t *base, const placement_t *p, const eplb_load_t *ld,
                              const placement_cli_t *c) {
    cJSON *root = placement_to_cjson(p), *e = root ? cJSON_AddObjectToObject(root, "eplb") : NULL;
    cJSON *layers = e ? cJSON_AddArrayToObject(e, "layers") : NULL;
    if (layers) {
        cJSON_AddStringToObject(e, "from_stats", c->from_stats);
        cJSON_AddNumberToObject(e, "redundant", (double)c->redundant);
        report_balance(base, p, ld, stderr, layers);
    }
    char *text = layers ? cJSON_PrintUnformatted(root) : NULL;
    if (text) printf("%s\n", text);
    cJSON_free(text);
    cJSON_Delete(root);
    return text ? 0 : -1;
}

/* --from-stats: derive from base and print. Exit status. */
static int derive(const placement_cli_t *c, const spex_config_t *cfg, const placement_t *base) {
    spex_err_t err = {{0}};
    eplb_load_t ld;
    if (eplb_load_read(c->from_stats, cfg, &ld, &err)) {
        cli_error("placement", "%s", err.msg);
        return 1;
    }
    placement_t *p = eplb_derive(&ld, base, (int)c->redundant, &err);
    int rc = 0;
    if (!p) {
        cli_error("placement", "--from-stats '%s': %s", c->from_stats, err.msg);
        rc = 1;
    } else if (c->json) {
        rc = print_derived_json(base, p, &ld, c) ? 1 : 0;
        if (rc) cli_error("placement", "out of memory");
    } else {
        placement_print(p, stdout);
        report_balance(base, p, &ld, stdout, NULL);
    }
    placement_free(p);
    eplb_load_free(&ld);
    return rc;
}

int cmd_placement(int argc, char **argv) {
    placement_cli_t c = {0};
    cli_ep_init(&c.ep);
    cli_group_t groups[] = {cli_model_group(&c.dir), CLI_GROUP(NULL, PLACEMENT_OPTIONS, &c), cli_ep_group(&c.ep)};
    groups[2].mask = CLI_EP_PLACEMENT_ONLY;
    cli_spec_t spec = CLI_SPEC("placement", "placement --model DIR --np N [options]", NULL, groups);
    int prc = cli_run_parse(&spec, argc, argv, 1);
    if (prc >= 0) return prc;
    if (!c.np) return cli_usage_error(&spec, "--np N is required");
    if (c.redundant && !c.from_stats) return cli_usage_error(&spec, "--redundant needs --from-stats FILE");
    spex_err_t err = {{0}};
    spex_config_t cfg;
    placement_policy_t pol = PLACEMENT_CONTIGUOUS;
    if (checkpoint_config(c.dir, &cfg, &err) || (c.ep.policy && placement_policy_parse(c.ep.policy, &pol, &err))) {
        cli_error("placement", "%s", err.msg);
        return 1;
    }
    int world = c.np > 1 ? (int)c.np : 2;
    placement_t *p = c.ep.placement ? placement_load(c.ep.placement, cfg.n_routed_experts, world, &err)
                          : placement_balanced(cfg.n_routed_experts, world, pol, &err);
    if (!p) { cli_error("placement", "%s", err.msg); return 1; }
    int rc = 0;
    if (c.from_stats) rc = derive(&c, &cfg, p);
    else if (c.json) rc = placement_print_json(p, stdout) ? (cli_error("placement", "out of memory"), 1) : 0;
    else placement_print(p, stdout);
    placement_free(p);
    return rc;
}
