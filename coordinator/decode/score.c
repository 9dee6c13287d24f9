/* score.c - see score.h. */
#include "score.h"

#include <stdlib.h>
#include <string.h>

#include "core/kernels.h"

/* Run `fwd` over the n rows either at once or one row at a time. */
static int run_rows(model_t *m, kv_cache_t *kv, int mtp_k, const int32_t *tokens, const float *hidden_in, int n,
                    bool decode, float *hidden_out, float *logits, spex_err_t *err) {
    int hid = m->cfg.hidden_size, V = m->cfg.vocab_size, step = decode ? 1 : n;
    for (int i = 0; i < n; i += step) {
        mla_seq_t seq = {kv, step};
        int rc = mtp_k < 0
                     ? model_forward(m, tokens + i, &seq, 1, hidden_out + (size_t)i * hid, NULL,
                                     logits + (size_t)i * V, err)
                     : model_mtp_forward(m, mtp_k, tokens + i, hidden_in + (size_t)i * hid, &seq, 1, NULL, NULL,
                                         logits + (size_t)i * V, err);
        if (rc) return -1;
    }
    return 0;
}

int score_sequence(model_t *m, const int32_t *tokens, int n, bool decode, bool mtp, score_result_t *out,
                   spex_err_t *err) {
    memset(out, 0, sizeof *out);
    int hid = m->cfg.hidden_size, V = m->cfg.vocab_size;
    if (n <= 0) return spex_fail(err, "no tokens to score");
    if (mtp && m->n_mtp == 0) return spex_fail(err, "the model has no MTP module (num_nextn_predict_layers = 0)");
    kv_cache_t *kv = kv_cache_create(model_cache_layers(m), m->cfg.kv_lora_rank, m->cfg.qk_rope_head_dim, n, err);
    float *hidden = malloc(sizeof(float) * (size_t)n * hid);
    int32_t *shifted = malloc(sizeof(int32_t) * (size_t)n);
    out->n = n;
    out->vocab = V;
    out->logits = malloc(sizeof(float) * (size_t)n * V);
    if (mtp) out->mtp_logits = malloc(sizeof(float) * (size_t)n * V);
    int rc = -1;
    if (!kv) goto done;
    if (!hidden || !shifted || !out->logits || (mtp && !out->mtp_logits)) {
        spex_fail(err, "out of memory scoring %d tokens", n);
        goto done;
    }
    if (run_rows(m, kv, -1, tokens, NULL, n, decode, hidden, out->logits, err)) goto done;
    out->main_next = argmax(out->logits + (size_t)(n - 1) * V, V);
    if (mtp) {
        memcpy(shifted, tokens + 1, sizeof(int32_t) * (size_t)(n - 1));
        shifted[n - 1] = out->main_next;
        if (run_rows(m, kv, 0, shifted, hidden, n, decode, NULL, out->mtp_logits, err)) goto done;
    }
    rc = 0;
done:
    kv_cache_free(kv);
    free(hidden);
    free(shifted);
    if (rc) score_result_free(out);
    return rc;
}

void score_result_free(score_result_t *r) {
    if (!r) return;
    free(r->logits);
    free(r->mtp_logits);
    r->logits = r->mtp_logits = NULL;
}
