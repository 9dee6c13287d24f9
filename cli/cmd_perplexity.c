/* cmd_perplexity.c - `spex perplexity --model DIR --file TEXT [--ctx N] [--no-bos] [--json]`.
 * Prints `perplexity: X` and `bits per byte: Y` (and with --mtp the MTP module's; definition in
 * coordinator/decode/perplexity.h), with a progress bar when stderr is a terminal. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli_ep.h"
#include "cli/cli_json.h"
#include "cli/cli_util.h"
#include "cli/commands.h"
#include "coordinator/decode/perplexity.h"
#include "coordinator/tokenizer/tokenizer.h"

typedef struct ppl_cli {
    const char *dir, *file;
    long ctx;
    bool no_bos, json, mtp;
    cli_ep_t ep;
} ppl_cli_t;

static const cli_option_t PPL_OPTIONS[] = {
    CLI_OPT_NEEDED("--file", "TEXT", ppl_cli_t, file, "the text to score"),
    CLI_OPT_INT("--ctx", NULL, "N", ppl_cli_t, ctx, 2, 1 << 20, "tokens per window"),
    CLI_OPT_FLAG("--no-bos", ppl_cli_t, no_bos, "do not prepend BOS"),
    CLI_OPT_FLAG("--json", ppl_cli_t, json, "print the result as one JSON object"),
    CLI_OPT_FLAG("--mtp", ppl_cli_t, mtp, "also score the MTP module (token t+2) and its top-1\nagreement with the main model's next prediction"),
    CLI_OPT_STRING("--stats", "FILE", ppl_cli_t, ep.stats, "the expert-parallel statistics as JSON (same as\n--ep-stats)"),
};

static void progress_bar(void *user, long done, long total) {
    (void)user;
    int width = 40, fill = (int)(width * done / (total > 0 ? total : 1));
    fprintf(stderr, "\r[%.*s%*s] %ld/%ld tokens", fill, "========================================", width - fill, "",
            done, total);
    if (done >= total) fputc('\n', stderr);
}

static char *read_all(const char *path, size_t *len, spex_err_t *err) {
    FILE *f = fopen(path, "rb");
    if (!f) { spex_fail(err, "cannot open '%s'", path); return NULL; }
    size_t cap = 1 << 16, n = 0, k;
    char *buf = malloc(cap);
    while (buf && (k = fread(buf + n, 1, cap - n, f)) > 0) {
        n += k;
        if (n == cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) { free(buf); buf = NULL; }
            else buf = nb;
        }
    }
    fclose(f);
    if (!buf) { spex_fail(err, "out of memory reading '%s'", path); return NULL; }
    *len = n;
    return buf;
}

static int ppl_parse(int argc, char **argv, ppl_cli_t *c) {
    *c = (ppl_cli_t){.ctx = 256};
    cli_ep_init(&c->ep);
    cli_group_t groups[] = {cli_model_group(&c->dir), CLI_GROUP(NULL, PPL_OPTIONS, c), cli_ep_group(&c->ep), cli_compute_group(&c->ep)};
    cli_spec_t spec = CLI_SPEC("perplexity", "perplexity --model DIR --file TEXT [options]",
                               "Prints perplexity and bits per byte (coordinator/decode/perplexity.h).", groups);
    return cli_run_parse(&spec, argc, argv, 1);
}

static int print_json(const ppl_cli_t *c, const model_t *m, const ppl_result_t *r, double ppl, double bpb, size_t n,
                      size_t bytes) {
    cJSON *o = cJSON_CreateObject();
    if (m->balance) {   /* dynamic routing bias on: what it did */
        bias_balance_stats_t bs = bias_balance_stats(m->balance);
        cJSON *b = cJSON_AddObjectToObject(o, "bias_update");
        cJSON_AddNumberToObject(b, "rate", c->ep.bias_rate);
        cJSON_AddNumberToObject(b, "window", (double)(c->ep.bias_window > 0 ? c->ep.bias_window : 256));
        cJSON_AddNumberToObject(b, "updates", (double)bs.updates);
        cJSON_AddNumberToObject(b, "last_window_max_over_mean", bs.last_max_over_mean);
    }
    cJSON_AddNumberToObject(o, "perplexity", ppl);
    cJSON_AddNumberToObject(o, "bits_per_byte", bpb);
    cJSON_AddNumberToObject(o, "nll", r->nll);
    cJSON_AddNumberToObject(o, "tokens", (double)n);
    cJSON_AddNumberToObject(o, "predicted", (double)r->predicted);
    cJSON_AddNumberToObject(o, "bytes", (double)bytes);
    cJSON_AddNumberToObject(o, "ctx", (double)c->ctx);
    cJSON_AddNumberToObject(o, "seconds", r->seconds);
    if (c->mtp) {
        cJSON *t = cJSON_AddObjectToObject(o, "mtp");
        cJSON_AddNumberToObject(t, "perplexity", exp(r->mtp_nll / (double)(r->mtp_predicted ? r->mtp_predicted : 1)));
        cJSON_AddNumberToObject(t, "nll", r->mtp_nll);
        cJSON_AddNumberToObject(t, "predicted", (double)r->mtp_predicted);
        cJSON_AddNumberToObject(t, "agreement", (double)r->mtp_agree / (double)(r->mtp_predicted ? r->mtp_predicted : 1));
    }
    return cli_json_print(o, stdout);
}

int cmd_perplexity(int argc, char **argv) {
    ppl_cli_t c;
    int prc = ppl_parse(argc, argv, &c);
    if (prc >= 0) return prc;
    spex_err_t err = {0};
    size_t len = 0, n = 0;
    int32_t *ids = NULL;
    char *text = NULL;
    model_t *m = NULL;
    model_options_t opt = {.load_mtp = c.mtp, .local_experts = true, .progress = cli_progress, .progress_user = "loading model"};
    tokenizer_t *tok = tokenizer_load(c.dir, &err);
    int rc = 1;
    if (!tok || !(text = read_all(c.file, &len, &err))) goto fail;
    bool bos = !c.no_bos && tokenizer_bos_id(tok) >= 0;
    if (tokenizer_encode(tok, text, len, bos, &ids, &n, &err) || !(m = cli_model_load(c.dir, &opt, &c.ep, &err))) goto fail;
    ppl_result_t r;
    if (perplexity_run(m, ids, (long)n, (int)c.ctx, c.mtp, isatty(2) ? progress_bar : NULL, NULL, &r, &err)) goto fail;
    size_t scored_bytes = 0;                     /* bytes of the tokens that were predicted */
    for (size_t i = 0; i < n; i++) {
        size_t b = 0;
        if (i % (size_t)c.ctx != 0 && !tokenizer_is_special(tok, ids[i])) tokenizer_token_bytes(tok, ids[i], &b);
        scored_bytes += b;
    }
    double ppl = exp(r.nll / r.predicted), bpb = r.nll / log(2.0) / (double)(scored_bytes ? scored_bytes : 1);
    if (c.json && print_json(&c, m, &r, ppl, bpb, n, scored_bytes)) { spex_fail(&err, "out of memory"); goto fail; }
    if (!c.json)
        printf("perplexity: %.6f\nbits per byte: %.6f\ntokens: %zu (%ld predicted, ctx %ld), %.1f tokens/s\n", ppl,
               bpb, n, r.predicted, c.ctx, r.seconds > 0 ? r.predicted / r.seconds : 0);
    if (!c.json && c.mtp)
        printf("MTP perplexity (token t+2): %.6f\nMTP top-1 agreement with the main model: %.4f (%ld rows)\n",
               exp(r.mtp_nll / (double)(r.mtp_predicted ? r.mtp_predicted : 1)),
               (double)r.mtp_agree / (double)(r.mtp_predicted ? r.mtp_predicted : 1), r.mtp_predicted);
    if (!c.json && m->balance)
        printf("bias updates: %llu (rate %g, window %ld rows); last window's max/mean expert load %.3f\n",
               (unsigned long long)bias_balance_stats(m->balance).updates, c.ep.bias_rate,
               c.ep.bias_window > 0 ? c.ep.bias_window : 256, bias_balance_stats(m->balance).last_max_over_mean);
    rc = cli_ep_finish("perplexity", &c.ep) ? 1 : 0;
    goto done;
fail:
    cli_error("perplexity", "%s", err.msg);
done:
    model_free(m);
    tokenizer_free(tok);
    free(text);
    free(ids);
    return rc;
}
