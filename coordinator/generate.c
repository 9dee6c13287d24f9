/* generate.c - see generate.h. */
#include "generate.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

double spex_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int check_request(const model_t *m, int n_prompt, const gen_params_t *p, spex_err_t *err) {
    const char *bad = sampler_check(&p->sampling);
    if (bad) return spex_fail(err, "%s", bad);
    if (n_prompt <= 0) return spex_fail(err, "empty prompt");
    if (p->max_new_tokens < 0) return spex_fail(err, "max_new_tokens must be >= 0");
    long total = (long)n_prompt + p->max_new_tokens;
    if (total > m->rope.max_pos)
        return spex_fail(err, "prompt (%d tokens) + max_new_tokens (%d) exceeds the context of %d tokens", n_prompt,
                         p->max_new_tokens, m->rope.max_pos);
    return 0;
}

int generate(model_t *m, const int32_t *prompt, int n_prompt, const gen_params_t *p, gen_token_fn on_token,
             void *user, int32_t **out, int *n_out, gen_stats_t *stats, spex_err_t *err) {
    memset(stats, 0, sizeof *stats);
    *out = NULL;
    *n_out = 0;
    if (check_request(m, n_prompt, p, err)) return -1;
    int V = m->cfg.vocab_size, cap = n_prompt + p->max_new_tokens;
    kv_cache_t *kv = kv_cache_create(model_cache_layers(m), m->cfg.kv_lora_rank, m->cfg.qk_rope_head_dim, cap, err);
    float *logits = malloc(sizeof(float) * V), *probs = malloc(sizeof(float) * V);
    uint8_t *want = calloc((size_t)n_prompt, 1);
    int32_t *gen = malloc(sizeof(int32_t) * (size_t)(p->max_new_tokens + 1));
    rng_t rng;
    rng_seed(&rng, p->sampling.seed);
    int rc = -1, n = 0;
    if (!kv) goto done;
    if (!logits || !probs || !want || !gen) { spex_fail(err, "out of memory"); goto done; }
    stats->prompt_tokens = n_prompt;
    stats->finish_reason = "length";
    want[n_prompt - 1] = 1;
    double t0 = spex_now();
    mla_seq_t seq = {kv, n_prompt};
    if (model_forward(m, prompt, &seq, 1, NULL, want, logits, false, err)) goto done;
    stats->prefill_seconds = spex_now() - t0;
    t0 = spex_now();
    while (n < p->max_new_tokens) {
        int32_t tok = sampler_sample(&p->sampling, logits, V, &rng, probs);
        gen[n++] = tok;
        if (on_token && on_token(user, tok)) { stats->finish_reason = "cancelled"; break; }
        if (tok == p->eos_id) { stats->finish_reason = "stop"; break; }
        if (n == p->max_new_tokens) break;
        mla_seq_t one = {kv, 1};
        if (model_forward(m, &tok, &one, 1, NULL, NULL, logits, true, err)) goto done;
    }
    stats->decode_seconds = spex_now() - t0;
    stats->generated_tokens = n;
    rc = 0;
done:
    kv_cache_free(kv);
    free(logits);
    free(probs);
    free(want);
    if (rc == 0) { *out = gen; *n_out = n; }
    else free(gen);
    return rc;
}
