/* cmd_logits.c - `spex logits`: next-token logits at every position, as JSON.
 *
 *   spex logits --model DIR --tokens 5,17,42 [--decode] [--mtp]
 * prints {"tokens":[...],"logits":[[...],...]} (+ "mtp_logits", "mtp_next_token"
 * with --mtp). Row t holds the logits for the token after tokens[t]. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_ep.h"
#include "cli/cli_util.h"
#include "cli/commands.h"
#include "coordinator/score.h"

static void logits_usage(FILE *f) {
    fprintf(f,
            "usage: spex logits --model DIR --tokens ID,ID,... [--decode] [--mtp]\n"
            "  --decode   compute the rows one token at a time through the KV cache (default: one prefill)\n"
            "  --mtp      add mtp_logits: row t predicts tokens[t+2] (last row: after the main model's argmax)\n"
            "  --stats FILE  the expert-parallel statistics as JSON (same as --ep-stats)\n");
    cli_ep_usage(f);
}

static void print_rows(const char *key, const float *x, int n, int V) {
    printf(",\"%s\":[", key);
    for (int i = 0; i < n; i++) {
        if (i) putchar(',');
        cli_print_floats(stdout, x + (size_t)i * V, V);
    }
    putchar(']');
}

int cmd_logits(int argc, char **argv) {
    const char *dir = NULL, *toks = NULL;
    bool decode = false, mtp = false;
    cli_ep_t ep;
    cli_ep_init(&ep);
    for (int i = 1; i < argc; i++) {
        int r;
        if ((r = cli_ep_opt(argc, argv, &i, &ep))) {
            if (r < 0) return 2;
        } else if ((r = cli_opt(argc, argv, &i, "--stats", &ep.stats))) {   /* this command's only statistics */
            if (r < 0) return 2;
        } else if ((r = cli_opt(argc, argv, &i, "--model", &dir)) || (r = cli_opt(argc, argv, &i, "--tokens", &toks))) {
            if (r < 0) return 2;
        } else if (!strcmp(argv[i], "--decode")) decode = true;
        else if (!strcmp(argv[i], "--mtp")) mtp = true;
        else if (!strcmp(argv[i], "--help")) { logits_usage(stdout); return 0; }
        else { cli_error("logits", "unknown option '%s'", argv[i]); logits_usage(stderr); return 2; }
    }
    if (!dir || !toks) { logits_usage(stderr); return 2; }
    int32_t *ids;
    int n;
    if (cli_parse_ids("--tokens", toks, &ids, &n)) return 2;
    spex_err_t err = {0};
    model_options_t opt = {.load_mtp = mtp, .local_experts = true, .progress = cli_progress, .progress_user = "loading model"};
    model_t *m = cli_model_load(dir, &opt, &ep, &err);
    score_result_t res;
    int rc = 1;
    if (!m || score_sequence(m, ids, n, decode, mtp, &res, &err)) {
        cli_error("logits", "%s", err.msg);
        goto done;
    }
    printf("{\"tokens\":");
    cli_print_ids(stdout, ids, n);
    print_rows("logits", res.logits, n, res.vocab);
    if (mtp) {
        printf(",\"mtp_next_token\":%d", (int)res.main_next);
        print_rows("mtp_logits", res.mtp_logits, n, res.vocab);
    }
    printf("}\n");
    score_result_free(&res);
    rc = cli_ep_finish("logits", &ep) ? 1 : 0;
done:
    model_free(m);
    free(ids);
    return rc;
}
