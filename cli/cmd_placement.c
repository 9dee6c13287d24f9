/* cmd_placement.c - `spex placement`: the expert -> rank table a job would use.
 *
 *   spex placement --model DIR --np N [--placement FILE] [--placement-policy P] [--json]
 * N is the mpirun world size (rank 0 coordinates, ranks 1..N-1 host experts;
 * N = 1 means one in-process worker rank). Errors (an unhosted expert, a rank
 * outside the job) are the ones the job itself would report. */
#include <stdio.h>
#include <string.h>

#include "cli/cli_ep.h"
#include "cli/cli_util.h"
#include "cli/commands.h"
#include "coordinator/ep/placement.h"
#include "core/checkpoint.h"
#include "core/config.h"

typedef struct placement_cli {
    const char *dir;
    long np;
    bool json;
    cli_ep_t ep;   /* --placement, --placement-policy */
} placement_cli_t;

static const cli_option_t PLACEMENT_OPTIONS[] = {
    CLI_OPT_INT("--np", NULL, "N", placement_cli_t, np, 1, 4096, "the mpirun world size (required)"),
    CLI_OPT_FLAG("--json", placement_cli_t, json, "print the table as JSON"),
};

int cmd_placement(int argc, char **argv) {
    placement_cli_t c = {0};
    cli_ep_init(&c.ep);
    cli_group_t groups[] = {cli_model_group(&c.dir), CLI_GROUP(NULL, PLACEMENT_OPTIONS, &c), cli_ep_group(&c.ep)};
    groups[2].mask = CLI_EP_PLACEMENT_ONLY;
    cli_spec_t spec = CLI_SPEC("placement", "placement --model DIR --np N [options]", NULL, groups);
    int prc = cli_run_parse(&spec, argc, argv, 1);
    if (prc >= 0) return prc;
    if (!c.np) return cli_usage_error(&spec, "--np N is required");
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
    if (c.json) rc = placement_print_json(p, stdout);
    else placement_print(p, stdout);
    placement_free(p);
    if (rc) cli_error("placement", "out of memory");
    return rc ? 1 : 0;
}
