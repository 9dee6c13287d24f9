/* cmd_placement.c - `spex placement`: the expert -> rank table a job would use.
 *
 *   spex placement --model DIR --np N [--placement FILE] [--placement-policy P] [--json]
 * N is the mpirun world size (rank 0 coordinates, ranks 1..N-1 host experts;
 * N = 1 means one in-process worker rank). Errors (an unhosted expert, a rank
 * outside the job) are the ones the job itself would report. */
#include <stdio.h>
#include <string.h>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "coordinator/placement.h"
#include "core/config.h"

static void placement_usage(FILE *f) {
    fprintf(f, "usage: spex placement --model DIR --np N [--placement FILE] [--placement-policy contiguous|round-robin]"
               " [--json]\n");
}

int cmd_placement(int argc, char **argv) {
    const char *dir = NULL, *file = NULL, *policy = NULL, *v;
    long np = 0;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        int r;
        if ((r = cli_opt(argc, argv, &i, "--model", &dir)) || (r = cli_opt(argc, argv, &i, "--placement", &file)) ||
            (r = cli_opt(argc, argv, &i, "--placement-policy", &policy))) {
            if (r < 0) return 2;
        } else if ((r = cli_opt(argc, argv, &i, "--np", &v))) {
            if (r < 0 || cli_parse_int("--np", v, 1, 4096, &np)) return 2;
        } else if (!strcmp(argv[i], "--json")) json = true;
        else if (!strcmp(argv[i], "--help")) { placement_usage(stdout); return 0; }
        else { cli_error("placement", "unknown option '%s'", argv[i]); placement_usage(stderr); return 2; }
    }
    if (!dir || !np) { placement_usage(stderr); return 2; }
    spex_err_t err = {{0}};
    spex_config_t cfg;
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    placement_policy_t pol = PLACEMENT_CONTIGUOUS;
    if (config_load(&cfg, path, &err) || (policy && placement_policy_parse(policy, &pol, &err))) {
        cli_error("placement", "%s", err.msg);
        return 1;
    }
    int world = np > 1 ? (int)np : 2;
    placement_t *p = file ? placement_load(file, cfg.n_routed_experts, world, &err)
                          : placement_balanced(cfg.n_routed_experts, world, pol, &err);
    if (!p) { cli_error("placement", "%s", err.msg); return 1; }
    int rc = 0;
    if (json) rc = placement_print_json(p, stdout);
    else placement_print(p, stdout);
    placement_free(p);
    if (rc) cli_error("placement", "out of memory");
    return rc ? 1 : 0;
}
