/* cmd_perplexity.c - `spex perplexity --model DIR --file TEXT [--ctx N] [--no-bos]`.
 * Prints `perplexity: X` and `bits per byte: Y` (definition in
 * coordinator/perplexity.h), with a progress bar when stderr is a terminal. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli_ep.h"
#include "cli/cli_util.h"
#include "cli/commands.h"
#include "coordinator/perplexity.h"
#include "coordinator/tokenizer.h"

static void ppl_usage(FILE *f) {
    fprintf(f, "usage: spex perplexity --model DIR --file TEXT [--ctx N (default 256)] [--no-bos] [--json] [--stats FILE]\n"
               "  --stats FILE  the expert-parallel statistics as JSON (same as --ep-stats)\n");
    cli_ep_usage(f);
}

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

int cmd_perplexity(int argc, char **argv) {
    const char *dir = NULL, *file = NULL, *v;
    long ctx = 256;
    bool no_bos = false, json = false;
    cli_ep_t ep;
    cli_ep_init(&ep);
    for (int i = 1; i < argc; i++) {
        int r;
        if ((r = cli_ep_opt(argc, argv, &i, &ep))) {
            if (r < 0) return 2;
        } else if ((r = cli_opt(argc, argv, &i, "--stats", &ep.stats))) {   /* this command's only statistics */
            if (r < 0) return 2;
        } else if ((r = cli_opt(argc, argv, &i, "--model", &dir)) || (r = cli_opt(argc, argv, &i, "--file", &file))) {
            if (r < 0) return 2;
        } else if ((r = cli_opt(argc, argv, &i, "--ctx", &v))) {
            if (r < 0 || cli_parse_int("--ctx", v, 2, 1 << 20, &ctx)) return 2;
        } else if (!strcmp(argv[i], "--no-bos")) no_bos = true;
        else if (!strcmp(argv[i], "--json")) json = true;
        else if (!strcmp(argv[i], "--help")) { ppl_usage(stdout); return 0; }
        else { cli_error("perplexity", "unknown option '%s'", argv[i]); ppl_usage(stderr); return 2; }
    }
    if (!dir || !file) { ppl_usage(stderr); return 2; }
    spex_err_t err = {0};
    size_t len = 0, n = 0;
    int32_t *ids = NULL;
    char *text = NULL;
    model_t *m = NULL;
    model_options_t opt = {.load_mtp = false, .local_experts = true, .progress = cli_progress, .progress_user = "loading model"};
    tokenizer_t *tok = tokenizer_load(dir, &err);
    int rc = 1;
    if (!tok || !(text = read_all(file, &len, &err))) goto fail;
    bool bos = !no_bos && tokenizer_bos_id(tok) >= 0;
    if (tokenizer_encode(tok, text, len, bos, &ids, &n, &err) || !(m = cli_model_load(dir, &opt, &ep, &err))) goto fail;
    ppl_result_t r;
    if (perplexity_run(m, ids, (long)n, (int)ctx, isatty(2) ? progress_bar : NULL, NULL, &r, &err)) goto fail;
    size_t scored_bytes = 0;                     /* bytes of the tokens that were predicted */
    for (size_t i = 0; i < n; i++) {
        size_t b = 0;
        if (i % (size_t)ctx != 0 && !tokenizer_is_special(tok, ids[i])) tokenizer_token_bytes(tok, ids[i], &b);
        scored_bytes += b;
    }
    double ppl = exp(r.nll / r.predicted), bpb = r.nll / log(2.0) / (double)(scored_bytes ? scored_bytes : 1);
    if (json)
        printf("{\"perplexity\":%.6f,\"bits_per_byte\":%.6f,\"nll\":%.6f,\"tokens\":%zu,\"predicted\":%ld,"
               "\"bytes\":%zu,\"ctx\":%ld,\"seconds\":%.3f}\n",
               ppl, bpb, r.nll, n, r.predicted, scored_bytes, ctx, r.seconds);
    else
        printf("perplexity: %.6f\nbits per byte: %.6f\ntokens: %zu (%ld predicted, ctx %ld), %.1f tokens/s\n", ppl,
               bpb, n, r.predicted, ctx, r.seconds > 0 ? r.predicted / r.seconds : 0);
    rc = cli_ep_finish("perplexity", &ep) ? 1 : 0;
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
