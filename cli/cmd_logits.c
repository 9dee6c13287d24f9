/* cmd_logits.c - `spex logits`: next-token logits at every position, as JSON.
 *
 *   spex logits --model DIR --tokens 5,17,42 [--decode] [--mtp] [expert-parallel options]
 * prints {"tokens":[...],"logits":[[...],...]} (+ "mtp_logits", "mtp_next_token"
 * with --mtp). Row t holds the logits for the token after tokens[t]. The rows
 * are printed number by number, not built as a cJSON tree: vocabulary x
 * positions (129k x n for DeepSeek-V3) would be millions of nodes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_ep.h"
#include "cli/cli_util.h"
#include "cli/commands.h"
#include "coordinator/decode/score.h"

typedef struct logits_cli {
    const char *dir, *tokens;
    bool decode, mtp;
    cli_ep_t ep;
} logits_cli_t;

static const cli_option_t LOGITS_OPTIONS[] = {
    CLI_OPT_NEEDED("--tokens", "ID,ID,...", logits_cli_t, tokens, "the sequence"),
    CLI_OPT_FLAG("--decode", logits_cli_t, decode,
                 "compute the rows one token at a time through the KV\ncache (default: one prefill)"),
    CLI_OPT_FLAG("--mtp", logits_cli_t, mtp,
                 "add mtp_logits: row t predicts tokens[t+2] (last\nrow: after the main model's argmax)"),
    CLI_OPT_STRING("--stats", "FILE", logits_cli_t, ep.stats, "the expert-parallel statistics as JSON (same as\n--ep-stats)"),
};

static void print_rows(const char *key, const float *x, int n, int V) {
    printf(",\"%s\":[", key);
    for (int i = 0; i < n; i++) {
        if (i) putchar(',');
        cli_print_floats(stdout, x + (size_t)i * V, V);
    }
    putchar(']');
}

int cmd_logits(int argc, char **argv) {
    logits_cli_t c = {0};
    cli_ep_init(&c.ep);
    cli_group_t groups[] = {cli_model_group(&c.dir), CLI_GROUP(NULL, LOGITS_OPTIONS, &c), cli_ep_group(&c.ep), cli_compute_group(&c.ep)};
    cli_spec_t spec = CLI_SPEC("logits", "logits --model DIR --tokens ID,ID,... [--decode] [--mtp] [options]",
                               "Prints {\"tokens\", \"logits\": one row per position} as JSON.", groups);
    int prc = cli_run_parse(&spec, argc, argv, 1);
    if (prc >= 0) return prc;
    int32_t *ids;
    int n;
    if (cli_parse_ids("--tokens", c.tokens, &ids, &n)) return 2;
    spex_err_t err = {0};
    model_options_t opt = {.load_mtp = c.mtp, .local_experts = true, .progress = cli_progress, .progress_user = "loading model"};
    model_t *m = cli_model_load(c.dir, &opt, &c.ep, &err);
    score_result_t res;
    int rc = 1;
    if (!m || score_sequence(m, ids, n, c.decode, c.mtp, &res, &err)) {
        cli_error("logits", "%s", err.msg);
        goto done;
    }
    printf("{\"tokens\":");
    cli_print_ids(stdout, ids, n);
    print_rows("logits", res.logits, n, res.vocab);
    if (c.mtp) {
        printf(",\"mtp_next_token\":%d", (int)res.main_next);
        print_rows("mtp_logits", res.mtp_logits, n, res.vocab);
    }
    printf("}\n");
    score_result_free(&res);
    rc = cli_ep_finish("logits", &c.ep) ? 1 : 0;
done:
    model_free(m);
    free(ids);
    return rc;
}
