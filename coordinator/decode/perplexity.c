/* perplexity.c - see perplexity.h. */
#include "perplexity.h"

#include <math.h>
#include <stdlib.h>

#include "coordinator/decode/generate.h"
#include "coordinator/decode/score.h"
#include "core/kernels.h"

/* -log softmax(logits)[target], computed in double for a stable sum. */
static double token_nll(const float *logits, int V, int target) {
    float mx = logits[0];
    for (int i = 1; i < V; i++) if (logits[i] > mx) mx = logits[i];
    double sum = 0;
    for (int i = 0; i < V; i++) sum += exp((double)logits[i] - mx);
    return log(sum) + mx - logits[target];
}

/* One window [len] with the MTP module: main and MTP logits from score_sequence (the
 * path `spex logits --mtp` takes, checked against DeepSeek's reference). */
static int mtp_window(model_t *m, const int32_t *w, int len, ppl_result_t *out, spex_err_t *err) {
    score_result_t s;
    if (score_sequence(m, w, len, false, true, &s, err)) return -1;
    int V = s.vocab;
    for (int i = 0; i + 1 < len; i++) out->nll += token_nll(s.logits + (size_t)i * V, V, w[i + 1]);
    for (int i = 0; i + 2 < len; i++) {
        const float *row = s.mtp_logits + (size_t)i * V;
        out->mtp_nll += token_nll(row, V, w[i + 2]);
        out->mtp_agree += argmax(row, V) == argmax(s.logits + (size_t)(i + 1) * V, V);
    }
    out->mtp_predicted += len > 2 ? len - 2 : 0;
    score_result_free(&s);
    return 0;
}

/* One window [len] without MTP: one prefill through `kv` (reset first) into logits [ctx, V]. */
static int main_window(model_t *m, kv_cache_t *kv, float *logits, const int32_t *w, int len, ppl_result_t *out,
                       spex_err_t *err) {
    int V = m->cfg.vocab_size;
    kv_cache_reset(kv, 0, kv->n_layers);
    mla_seq_t seq = {kv, len};
    if (model_forward(m, w, &seq, 1, NULL, NULL, logits, err)) return -1;
    for (int i = 0; i + 1 < len; i++) out->nll += token_nll(logits + (size_t)i * V, V, w[i + 1]);
    return 0;
}

int perplexity_run(model_t *m, const int32_t *tokens, long n, int ctx, bool mtp, ppl_progress_fn progress,
                   void *user, ppl_result_t *out, spex_err_t *err) {
    *out = (ppl_result_t){0};
    if (ctx < 2) return spex_fail(err, "--ctx must be at least 2, got %d", ctx);
    if (ctx > m->rope.max_pos) return spex_fail(err, "--ctx %d exceeds the model's context %d", ctx, m->rope.max_pos);
    if (n < 2) return spex_fail(err, "need at least 2 tokens, got %ld", n);
    if (mtp && m->n_mtp == 0) return spex_fail(err, "--mtp: the model has no MTP module (num_nextn_predict_layers = 0)");
    int V = m->cfg.vocab_size;
    kv_cache_t *kv = NULL;      /* the main path's, reused by every window; MTP windows go through score.h */
    float *logits = NULL;
    int rc = -1;
    if (!mtp) {
        if (!(kv = kv_cache_create(model_cache_layers(m), m->cfg.kv_lora_rank, m->cfg.qk_rope_head_dim, ctx, err)))
            goto done;
        if (!(logits = malloc(sizeof(float) * (size_t)ctx * V))) {
            spex_fail(err, "out of memory for %d x %d logits", ctx, V);
            goto done;
        }
    }
    double t0 = spex_now();
    for (long start = 0; start + 1 < n; start += ctx) {
        int len = (int)(n - start < ctx ? n - start : ctx);
        if (mtp ? mtp_window(m, tokens + start, len, out, err)
                : main_window(m, kv, logits, tokens + start, len, out, err))
            goto done;
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
