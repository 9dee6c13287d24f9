/* perplexity.c - see perplexity.h. */
#include "perplexity.h"

#include <math.h>
#include <stdlib.h>

#include "coordinator/decode/generate.h"

/* -log softmax(logits)[target], computed in double for a stable sum. */
static double token_nll(const float *logits, int V, int target) {
    float mx = logits[0];
    for (int i = 1; i < V; i++) if (logits[i] > mx) mx = logits[i];
    double sum = 0;
    for (int i = 0; i < V; i++) sum += exp((double)logits[i] - mx);
    return log(sum) + mx - logits[target];
}

int perplexity_run(model_t *m, const int32_t *tokens, long n, int ctx, ppl_progress_fn progress, void *user,
                   ppl_result_t *out, spex_err_t *err) {
    out->nll = 0;
    out->predicted = 0;
    if (ctx < 2) return spex_fail(err, "--ctx must be at least 2, got %d", ctx);
    if (ctx > m->rope.max_pos) return spex_fail(err, "--ctx %d exceeds the model's context %d", ctx, m->rope.max_pos);
    if (n < 2) return spex_fail(err, "need at least 2 tokens, got %ld", n);
    int V = m->cfg.vocab_size;
    kv_cache_t *kv = kv_cache_create(model_cache_layers(m), m->cfg.kv_lora_rank, m->cfg.qk_rope_head_dim, ctx, err);
    float *logits = malloc(sizeof(float) * (size_t)ctx * V);
    int rc = -1;
    if (!kv) goto done;
    if (!logits) { spex_fail(err, "out of memory for %d x %d logits", ctx, V); goto done; }
    double t0 = spex_now();
    for (long start = 0; start + 1 < n; start += ctx) {
        int len = (int)(n - start < ctx ? n - start : ctx);
        kv_cache_reset(kv, 0, kv->n_layers);
        mla_seq_t seq = {kv, len};
        if (model_forward(m, tokens + start, &seq, 1, NULL, NULL, logits, err)) goto done;
        for (int i = 0; i + 1 < len; i++) out->nll += token_nll(logits + (size_t)i * V, V, tokens[start + i + 1]);
        out->predicted += len - 1;
        if (progress) progress(user, start + len, n);
    }
    out->seconds = spex_now() - t0;
    rc = 0;
done:
    kv_cache_free(kv);
    free(logits);
    return rc;
}
