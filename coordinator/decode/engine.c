/* engine.c - see engine.h. One function per phase of a step. */
#include "engine.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/kernels.h"
#include "coordinator/decode/generate.h"
#include "coordinator/decode/spec_verify.h"

/* ---------------------------------------------------------------- sequences */

static int seq_check(const model_t *m, int n_prompt, const seq_params_t *p, spex_err_t *err) {
    const char *bad = sampler_check(&p->sampling);
    if (bad) return spex_fail(err, "%s", bad);
    if (n_prompt <= 0) return spex_fail(err, "empty prompt");
    if (p->max_new_tokens < 0) return spex_fail(err, "max_new_tokens must be >= 0");
    bad = logit_adjust_check(&p->adjust, m->cfg.vocab_size, NULL);
    if (bad) return spex_fail(err, "%s", bad);
    if (p->logprobs && (p->top_logprobs < 0 || p->top_logprobs > SPEX_MAX_TOP_LOGPROBS))
        return spex_fail(err, "top_logprobs must be in [0, %d]", SPEX_MAX_TOP_LOGPROBS);
    if (p->prompt_logprobs && !p->logprobs) return spex_fail(err, "prompt_logprobs needs logprobs");
    if (!(p->draft_min_p >= 0 && p->draft_min_p <= 1))
        return spex_fail(err, "draft_min_p must be in [0, 1], got %g", (double)p->draft_min_p);
    if (p->spec_k < 0 || p->spec_k > SPEX_MAX_SPEC_K)
        return spex_fail(err, "spec_k must be in [0, %d], got %d", SPEX_MAX_SPEC_K, p->spec_k);
    if (p->spec_k > 0 && m->n_mtp == 0)
        return spex_fail(err, "speculation (spec_k %d) needs an MTP module, and this model has none loaded",
                         p->spec_k);
    if ((long)n_prompt + p->max_new_tokens > m->rope.max_pos)
        return spex_fail(err, "prompt (%d tokens) + max_new_tokens (%d) exceeds the context of %d tokens", n_prompt,
                         p->max_new_tokens, m->rope.max_pos);
    return 0;
}

/* Whether a sequence computes the MTP rows of every module at each of its
 * positions, so that the prefix cache may keep them: mtp_forward_all runs
 * modules 0..spec_k-1, so with spec_k below the model's module count (or 0)
 * the other modules' rows are never written, or only at the positions a
 * batch with a larger spec_k covered. Such a sequence keeps its main hidden
 * states for the cache instead (a later request computes every module's rows
 * from them). DeepSeek-V3 has one module: every speculating sequence is complete. */
static bool seq_mtp_complete(const model_t *m, const seq_params_t *p) {
    return m->n_mtp == 0 || (p->spec_k > 0 && p->spec_k >= m->n_mtp);
}

/* The buffers logit adjustment and logprobs need (none when unused). */
static int seq_alloc_extras(sequence_t *s, int V, spex_err_t *err) {
    const seq_params_t *p = &s->p;
    if (p->adjust.n_bias > 0) {
        s->bias = malloc(sizeof *s->bias * (size_t)p->adjust.n_bias);
        if (!s->bias) return spex_fail(err, "out of memory");
        memcpy(s->bias, p->adjust.bias, sizeof *s->bias * (size_t)p->adjust.n_bias);
    }
    s->p.adjust.bias = s->bias;
    if (logit_adjust_has_penalty(&p->adjust) && !(s->counts = calloc((size_t)V, sizeof *s->counts)))
        return spex_fail(err, "out of memory");
    if (!p->logprobs) return 0;
    s->lp = malloc(sizeof *s->lp * (size_t)(p->max_new_tokens + SPEX_MAX_SPEC_K + 1));
    s->lp_scratch = malloc(sizeof(float) * (size_t)V);
    if (p->prompt_logprobs) s->prompt_lp = calloc((size_t)s->n_prompt, sizeof *s->prompt_lp);
    if (!s->lp || !s->lp_scratch || (p->prompt_logprobs && !s->prompt_lp)) return spex_fail(err, "out of memory");
    return 0;
}

sequence_t *sequence_create(const model_t *m, const int32_t *prompt, int n_prompt, const seq_params_t *p,
                            spex_err_t *err) {
    if (seq_check(m, n_prompt, p, err)) return NULL;
    int V = m->cfg.vocab_size, cap = n_prompt + p->max_new_tokens + p->spec_k + 1;
    if (cap > m->rope.max_pos) cap = m->rope.max_pos;
    sequence_t *s = calloc(1, sizeof *s);
    if (!s) { spex_fail(err, "out of memory"); return NULL; }
    s->p = *p;
    s->n_prompt = n_prompt;
    s->prompt = malloc(sizeof(int32_t) * (size_t)n_prompt);
    s->out = malloc(sizeof(int32_t) * (size_t)(p->max_new_tokens + SPEX_MAX_SPEC_K + 1));
    s->mtp_hidden = malloc(sizeof(float) * (size_t)m->cfg.hidden_size);
    if (p->spec_k > 0 && p->sampled_drafts && p->sampling.temperature > 0)
        s->q = malloc(sizeof(float) * (size_t)p->spec_k * V);
    s->kv = kv_cache_create(model_cache_layers(m), m->cfg.kv_lora_rank, m->cfg.qk_rope_head_dim, cap, err);
    if (!s->kv || !s->prompt || !s->out || !s->mtp_hidden ||
        (p->spec_k > 0 && p->sampled_drafts && p->sampling.temperature > 0 && !s->q)) {
        if (s->kv) spex_fail(err, "out of memory for a sequence of %d tokens", cap);
        sequence_free(s);
        return NULL;
    }
    memcpy(s->prompt, prompt, sizeof(int32_t) * (size_t)n_prompt);
    if (m->prefix && !seq_mtp_complete(m, p) &&
        !(s->hid = malloc(sizeof(float) * (size_t)cap * (size_t)m->cfg.hidden_size))) {
        spex_fail(err, "out of memory for a sequence of %d tokens", cap);
        sequence_free(s);
        return NULL;
    }
    s->draft_cap = SPEX_MAX_SPEC_K;
    rng_seed(&s->rng, p->sampling.seed);
    if (seq_alloc_extras(s, V, err)) { sequence_free(s); return NULL; }
    return s;
}

void sequence_free(sequence_t *s) {
    if (!s) return;
    kv_cache_free(s->kv);
    free(s->prompt);
    free(s->out);
    free(s->q);
    free(s->mtp_hidden);
    free(s->hid);
    free(s->lp);
    free(s->lp_scratch);
    free(s->prompt_lp);
    free(s->bias);
    free(s->counts);
    free(s);
}

void spec_stats_add(spec_stats_t *a, const spec_stats_t *b) {
    a->steps += b->steps;
    a->emitted += b->emitted;
    a->drafted += b->drafted;
    a->proposed += b->proposed;
    a->accepted += b->accepted;
    for (int j = 0; j < SPEX_MAX_SPEC_K; j++) {
        a->drafted_at[j] += b->drafted_at[j];
        a->accepted_at[j] += b->accepted_at[j];
    }
    a->verify_seconds += b->verify_seconds;
    a->draft_seconds += b->draft_seconds;
}

/* Append a token to the output; returns false once the sequence is done. */
static bool seq_emit(sequence_t *s, int32_t tok, engine_token_fn cb, void *user) {
    s->out[s->n_out++] = tok;
    if (cb && cb(user, s, tok)) { s->done = true; s->finish_reason = "cancelled"; }
    else if (eos_set_has(&s->p.eos, tok)) { s->done = true; s->finish_reason = "stop"; }
    else if (s->n_out >= s->p.max_new_tokens) { s->done = true; s->finish_reason = "length"; }
    return !s->done;
}

/* Bias and penalties on a row whose history is the output plus drafts[0..j). */
static void seq_adjust(sequence_t *s, float *logits, int j) {
    if (logit_adjust_active(&s->p.adjust))
        logit_adjust_apply(&s->p.adjust, s->out, s->n_out, s->drafts, j, s->counts, logits);
}

/* Record the logprobs of the token about to be emitted (at out[n_out]) from its row. */
static void seq_logprob(sequence_t *s, const float *logits, int V, int32_t tok) {
    if (s->p.logprobs)
        token_logprob_fill(&s->p.sampling, logits, V, tok, s->p.top_logprobs, s->lp_scratch, s->lp + s->n_out);
}

/* Most drafts worth verifying now: no more than the tokens still wanted, and
 * every verify row must fit the cache. */
static int seq_room_drafts(const sequence_t *s) {
    int k = s->p.spec_k, left = s->p.max_new_tokens - s->n_out - 1, room = s->kv->capacity - s->pos - 1;
    if (k > left) k = left;
    if (k > room) k = room;
    return k < 0 ? 0 : k;
}

/* Most drafts to make in this step: also within the step row budget. */
static int seq_max_drafts(const sequence_t *s) {
    int k = seq_room_drafts(s);
    return k < s->draft_cap ? k : s->draft_cap;
}

/* The token at position p (prompt, then output). */
static int32_t seq_token_at(const sequence_t *s, int p) {
    return p < s->n_prompt ? s->prompt[p] : s->out[p - s->n_prompt];
}

/* Probability of the argmax under softmax(logits): 1 / sum exp(l - max). */
static float argmax_prob(const float *logits, int V, int32_t best) {
    double z = 0;
    for (int i = 0; i < V; i++) z += exp((double)logits[i] - logits[best]);
    return (float)(1.0 / z);
}

/* Draft token j from MTP logits: argmax, or a draw from q (kept for
 * verification); sets draft_stop when the draft is less likely than
 * draft_min_p under the MTP distribution (adaptive draft length). */
static int32_t seq_draft(sequence_t *s, float *mtp_logits, int j, int V) {
    int32_t t;
    seq_adjust(s, mtp_logits, j);
    float conf = 1.0f;
    if (!s->q) {
        t = argmax(mtp_logits, V);
        if (s->p.draft_min_p > 0) conf = argmax_prob(mtp_logits, V, t);
    } else {
        float *q = s->q + (size_t)j * V;
        sampler_probs(&s->p.sampling, mtp_logits, V, q);
        t = sampler_draw(q, V, &s->rng);
        conf = q[t];
    }
    s->draft_stop = conf < s->p.draft_min_p;
    return t;
}

/* ---------------------------------------------------------------- verification */

static void seq_count(sequence_t *s, int k, int a, int emitted) {
    s->stats.steps++;
    s->stats.emitted += emitted;
    s->stats.proposed += k;
    int evaluated = a < k ? a + 1 : k;
    for (int i = 0; i < evaluated; i++) {
        s->stats.drafted_at[i]++;
        s->stats.drafted++;
        if (i < a) { s->stats.accepted_at[i]++; s->stats.accepted++; }
    }
}

/* ---------------------------------------------------------------- phases */

/* Scratch for one batched forward: rows of several sequences. */
typedef struct rows {
    int n, n_seqs, hid, V;
    int32_t *tokens;      /* [n] */
    float *hidden;        /* [n, hid]: MTP input */
    float *hidden_out;    /* [n, hid] */
    float *logits;        /* [n, V] */
    uint8_t *want;        /* [n] */
    mla_seq_t *seqs;      /* [n_seqs] */
    sequence_t **who;     /* [n_seqs] */
    int *first;           /* [n_seqs] first row of each sequence */
} rows_t;

/* Nothing to free: the rows live in one of the model's step arenas. */
static void rows_free(rows_t *r) { memset(r, 0, sizeof *r); }

/* Next `bytes` of the carve at *at, 64-byte aligned. */
static void *carve(uint8_t **at, size_t bytes) {
    void *p = *at;
    *at += (bytes + 63) / 64 * 64;
    return p;
}

/* Rows for n rows of n_seqs sequences, plus `aux` floats (*aux_out), carved
 * from the model's grow-only step arena `which` (no allocation once warm). */
static int rows_alloc(rows_t *r, model_t *m, int which, int n, int n_seqs, size_t aux, float **aux_out,
                      spex_err_t *err) {
    memset(r, 0, sizeof *r);
    r->hid = m->cfg.hidden_size;
    r->V = m->cfg.vocab_size;
    size_t nn = n > 0 ? (size_t)n : 1, ns = n_seqs > 0 ? (size_t)n_seqs : 1;
    size_t sizes[9] = {sizeof(int32_t) * nn, sizeof(float) * nn * r->hid, sizeof(float) * nn * r->hid,
                       sizeof(float) * nn * r->V, nn, sizeof(mla_seq_t) * ns, sizeof(sequence_t *) * ns,
                       sizeof(int) * ns, sizeof(float) * aux};
    size_t total = 0;
    for (int i = 0; i < 9; i++) total += (sizes[i] + 63) / 64 * 64;
    uint8_t *at = (uint8_t *)arena_floats(&m->step[which], total / sizeof(float) + 1);
    if (!at) return spex_fail(err, "out of memory for a step of %d rows", n);
    r->tokens = carve(&at, sizes[0]);
    r->hidden = carve(&at, sizes[1]);
    r->hidden_out = carve(&at, sizes[2]);
    r->logits = carve(&at, sizes[3]);
    r->want = carve(&at, sizes[4]);
    memset(r->want, 0, nn);
    r->seqs = carve(&at, sizes[5]);
    r->who = carve(&at, sizes[6]);
    r->first = carve(&at, sizes[7]);
    if (aux_out) *aux_out = carve(&at, sizes[8]);
    return 0;
}

/* Run MTP modules 0..n_use-1 over the same rows. Draft step j (1-based) uses
 * module (j-1) mod n_mtp, so every module that a sequence may use must see
 * every row: its own cache then has no holes, whichever module drafts next.
 * Module `use` writes hidden_out[n_seqs, hidden] and logits[n_seqs, vocab]
 * of each sequence's last row, the only outputs drafting reads: the other
 * rows only get their cache entries (model_mtp_forward_last), and the other
 * modules give no output. With one module (DeepSeek-V3) this is one forward. */
static int mtp_forward_all(model_t *m, int use, int n_use, rows_t *r, spex_err_t *err) {
    if (n_use > m->n_mtp) n_use = m->n_mtp;
    if (use >= n_use) n_use = use + 1;
    for (int k = 0; k < n_use; k++) {
        bool mine = k == use;
        if (model_mtp_forward_last(m, k, r->tokens, r->hidden, r->seqs, r->n_seqs, mine ? r->hidden_out : NULL,
                                   mine ? r->logits : NULL, err))
            return -1;
    }
    return 0;
}

/* prompt_lp[t] for t = 1..n-1 from the logits of rows 0..n-2 (log_softmax). */
static void prompt_logprobs(sequence_t *s, const float *logits, int V) {
    const sampling_params_t model_dist = {.temperature = 0, .top_p = 1};
    for (int t = 1; t < s->n_prompt; t++)
        token_logprob_fill(&model_dist, logits + (size_t)(t - 1) * V, V, s->prompt[t], s->p.top_logprobs,
                           s->lp_scratch, &s->prompt_lp[t]);
}

/* Keep the main hidden states of positions [p0, p0 + count) (rows of hidden)
 * for the prefix cache, when the sequence keeps them and has every one before. */
static void seq_keep_hidden(sequence_t *s, const float *hidden, int hid, int p0, int count) {
    if (!s->hid || s->hid_len != p0) return;
    memcpy(s->hid + (size_t)p0 * hid, hidden, sizeof(float) * (size_t)count * hid);
    s->hid_len = p0 + count;
}

/* A speculating sequence the step row budget holds to 0 drafts this step. */
static bool seq_paused(const model_t *m, const sequence_t *s) {
    return m->n_mtp > 0 && s->p.spec_k > 0 && s->draft_cap == 0 && seq_room_drafts(s) > 0;
}

/* A paused sequence skips the MTP catch-up, so it must keep the main hidden
 * states from position p (its MTP length) on to catch up later: hid, taken
 * at its first pause. If it cannot (out of memory), it does not pause. */
static void seq_plan_pause(const model_t *m, sequence_t *s, int p) {
    if (!seq_paused(m, s)) return;
    if (!s->hid && (s->hid = malloc(sizeof(float) * (size_t)s->kv->capacity * (size_t)m->cfg.hidden_size)))
        s->hid_from = s->hid_len = p;
    if (!s->hid || s->hid_len != p) s->draft_cap = SPEX_MAX_SPEC_K;
}

/* Restore the prompt's longest cached prefix into s->kv (*c rows). With
 * speculation, positions cached by a request without it have no MTP rows but
 * their main hidden states: compute the MTP rows (h_t, token_{t+1}) from
 * them, one MTP layer instead of the whole model. Exact: the same rows from
 * the same inputs as a prefill's. */
static int restore_prefix(model_t *m, sequence_t *s, bool mtp, int *c, spex_err_t *err) {
    int n = s->n_prompt, h0, h1;
    if (!mtp) {   /* the restored positions' hidden states stay in the cache */
        *c = s->hid_from = s->hid_len = prefix_cache_restore(m->prefix, s->prompt, n, s->kv, 0);
        return 0;
    }
    rows_t r;
    if (rows_alloc(&r, m, 1, n, 1, 0, NULL, err)) return -1;
    *c = prefix_cache_restore_hidden(m->prefix, s->prompt, n, s->kv, 1, r.hidden, &h0, &h1);
    s->hid_from = s->hid_len = *c;   /* s->hid (spec_k below the modules) keeps the positions from c on */
    int rc = 0;
    if (h1 > h0) {
        memcpy(r.tokens, s->prompt + h0 + 1, sizeof(int32_t) * (size_t)(h1 - h0));
        r.seqs[0] = (mla_seq_t){s->kv, h1 - h0};
        r.n_seqs = 1;
        rc = mtp_forward_all(m, 0, m->n_mtp, &r, err);   /* no logits wanted: the rows only */
    }
    rows_free(&r);
    return rc;
}

/* After the prefill's forward over prompt rows [c, n) (r: their hidden
 * states, the logits of the wanted rows, last = the last row's): emit the
 * first token, then (speculating) the MTP rows of those positions and d1. */
static int prefill_first_token(model_t *m, sequence_t *s, rows_t *r, int c, float *last, float *probs,
                               engine_token_fn cb, void *user, spex_err_t *err) {
    int n = s->n_prompt, rn = n - c;
    seq_adjust(s, last, 0);
    s->last = sampler_sample(&s->p.sampling, last, r->V, &s->rng, probs);
    seq_logprob(s, last, r->V, s->last);
    if (!seq_emit(s, s->last, cb, user) || seq_max_drafts(s) == 0) return 0;
    /* MTP rows t = c..n-1: (h_t, token_{t+1}), token_n = the token just emitted */
    memcpy(r->tokens, s->prompt + c + 1, sizeof(int32_t) * (size_t)(rn - 1));
    r->tokens[rn - 1] = s->last;
    r->seqs[0] = (mla_seq_t){s->kv, rn};
    r->n_seqs = 1;
    if (mtp_forward_all(m, 0, s->p.spec_k, r, err)) return -1;
    if (seq_mtp_complete(m, &s->p)) s->mtp_canon = n;   /* else some modules' rows are missing */
    memcpy(s->mtp_hidden, r->hidden_out, sizeof(float) * r->hid);   /* the last row's (one sequence) */
    s->drafts[0] = seq_draft(s, r->logits, 0, r->V);
    s->n_drafts = 1;
    return 0;
}

/* Run the prompt (own forward call; rows [0, c) restored from the prefix
 * cache are skipped), emit the first token, draft d1. With max_new_tokens 0
 * (only with prompt_logprobs: engine_step finishes the others unrun) the
 * sequence ends after the prompt's logprobs, finish_reason "length". */
static int phase_prefill(model_t *m, sequence_t *s, engine_token_fn cb, void *user, spex_err_t *err) {
    bool mtp = s->p.spec_k > 0 && m->n_mtp > 0, all = s->p.prompt_logprobs;
    int n = s->n_prompt, c = 0;
    if (m->prefix && !all && restore_prefix(m, s, mtp, &c, err)) return -1;
    int rn = n - c;
    rows_t r;
    float *probs;
    if (rows_alloc(&r, m, 0, rn, 1, (size_t)m->cfg.vocab_size, &probs, err)) return -1;
    double t0 = spex_now();
    int rc = -1;
    if (all) memset(r.want, 1, (size_t)rn);
    r.want[rn - 1] = 1;
    mla_seq_t seq = {s->kv, rn};
    if (model_forward(m, s->prompt + c, &seq, 1, r.hidden, r.want, r.logits, err)) goto done;
    seq_plan_pause(m, s, c);
    seq_keep_hidden(s, r.hidden, r.hid, c, rn);
    s->started = true;
    s->pos = n;
    if (all) prompt_logprobs(s, r.logits, r.V);
    if (s->p.max_new_tokens == 0) s->done = true, s->finish_reason = "length";
    else if (prefill_first_token(m, s, &r, c, r.logits + (all ? (size_t)(rn - 1) * r.V : 0), probs, cb, user, err))
        goto done;
    if (m->prefix)
        prefix_cache_insert_hidden(m->prefix, s->prompt, n, s->kv, s->mtp_canon, s->hid, s->hid_from, s->hid_len);
    rc = 0;
done:
    s->prefill_seconds = spex_now() - t0;
    rows_free(&r);
    return rc;
}

/* Accept/reject one sequence's drafts given its verify rows; emit tokens and
 * roll the main cache back. Returns the number of accepted drafts. */
static int verify_one(model_t *m, sequence_t *s, float *logits, int k, float *p, float *tmp,
                      engine_token_fn cb, void *user) {
    int32_t next;
    int V = m->cfg.vocab_size;
    for (int i = 0; i <= k; i++) seq_adjust(s, logits + (size_t)i * V, i);   /* row i follows drafts 1..i */
    int a = spec_verify(&s->p.sampling, logits, V, s->drafts, k, s->q, &s->rng, p, tmp, &next);
    int before = s->n_out;
    kv_cache_truncate(s->kv, 0, m->cfg.num_hidden_layers, s->pos + a + 1);
    s->pos += a + 1;
    s->last = next;
    bool alive = true;
    for (int i = 0; i < a && alive; i++) {
        seq_logprob(s, logits + (size_t)i * V, V, s->drafts[i]);
        alive = seq_emit(s, s->drafts[i], cb, user);
    }
    if (alive) {
        seq_logprob(s, logits + (size_t)a * V, V, next);
        seq_emit(s, next, cb, user);
    }
    seq_count(s, k, a, s->n_out - before);
    s->n_drafts = 0;
    return a;
}

/* MTP rows a paused sequence skipped, [MTP length, old_pos): after dropping
 * the MTP rows of last step's drafts, how many; -1 if hid does not hold their
 * hidden states (a broken invariant, never expected). */
static int seq_mtp_lag(const model_t *m, sequence_t *s, int old_pos) {
    kv_cache_truncate(s->kv, m->cfg.num_hidden_layers, m->n_mtp, old_pos);
    int from = s->kv->len[m->cfg.num_hidden_layers];
    if (from == old_pos) return 0;
    return s->hid && s->hid_from <= from && s->hid_len >= old_pos ? old_pos - from : -1;
}

/* Catch-up rows (h_t, token_{t+1}) of sequence i of the verify batch v, from
 * r's row `row` on: t = old_pos - g .. old_pos - 1 from hid (skipped while
 * paused), then t = old_pos .. old_pos + a from the verify rows (tokens d1..da,
 * last). Returns the rows written: g + a + 1. */
static int catchup_fill(rows_t *r, int row, const rows_t *v, int i, const sequence_t *s, int a, int g, int old_pos) {
    int t0 = old_pos - g;
    for (int t = t0; t < old_pos; t++) r->tokens[row + t - t0] = seq_token_at(s, t + 1);
    if (g > 0) memcpy(r->hidden + (size_t)row * r->hid, s->hid + (size_t)t0 * r->hid, sizeof(float) * (size_t)g * r->hid);
    memcpy(r->tokens + row + g, v->tokens + v->first[i] + 1, sizeof(int32_t) * (size_t)a);
    r->tokens[row + g + a] = s->last;
    memcpy(r->hidden + (size_t)(row + g) * r->hid, v->hidden_out + (size_t)v->first[i] * r->hid,
           sizeof(float) * (size_t)(a + 1) * r->hid);
    return g + a + 1;
}

/* MTP catch-up over the rows of `v` that were accepted (after a pause, also
 * the positions it skipped, from hid), drafting d1 for each. */
static int phase_catchup(model_t *m, rows_t *v, const int *accepted, const int *old_pos, int *lag,
                         spex_err_t *err) {
    int n = 0, ns = 0, max_k = 0;
    for (int i = 0; i < v->n_seqs; i++) {
        sequence_t *s = v->who[i];
        if (s->done || s->p.spec_k == 0 || seq_max_drafts(s) == 0) continue;
        if ((lag[i] = seq_mtp_lag(m, s, old_pos[i])) < 0)
            return spex_fail(err, "internal: a sequence's MTP cache has a gap before position %d", old_pos[i]);
        n += lag[i] + accepted[i] + 1, ns++;
        if (s->p.spec_k > max_k) max_k = s->p.spec_k;
    }
    if (ns == 0) return 0;
    rows_t r;
    if (rows_alloc(&r, m, 1, n, ns, 0, NULL, err)) return -1;
    int row = 0;
    for (int i = 0; i < v->n_seqs; i++) {
        sequence_t *s = v->who[i];
        if (s->done || s->p.spec_k == 0 || seq_max_drafts(s) == 0) continue;
        int c = r.n_seqs++, rows = catchup_fill(&r, row, v, i, s, accepted[i], lag[i], old_pos[i]);
        r.seqs[c] = (mla_seq_t){s->kv, rows};
        r.who[c] = s;
        r.first[c] = row;
        row += rows;
    }
    int rc = mtp_forward_all(m, 0, max_k, &r, err);
    for (int c = 0; rc == 0 && c < r.n_seqs; c++) {
        sequence_t *s = r.who[c];
        memcpy(s->mtp_hidden, r.hidden_out + (size_t)c * r.hid, sizeof(float) * r.hid);
        s->drafts[0] = seq_draft(s, r.logits + (size_t)c * r.V, 0, r.V);
        s->n_drafts = 1;
        if (seq_mtp_complete(m, &s->p)) s->mtp_canon = s->pos;
    }
    rows_free(&r);
    return rc;
}

/* One forward over [last, d1..dk] of every decoding sequence, then accept. */
static int phase_verify(model_t *m, sequence_t **dec, int n_dec, engine_token_fn cb, void *user, spex_err_t *err) {
    int n = 0;
    for (int i = 0; i < n_dec; i++) {
        int k = dec[i]->n_drafts < seq_room_drafts(dec[i]) ? dec[i]->n_drafts : seq_room_drafts(dec[i]);
        n += k + 1;
    }
    rows_t v;
    float *p;   /* [2, V] verification scratch, then accepted, old_pos, lag [n_dec] each */
    size_t V = (size_t)m->cfg.vocab_size;
    if (rows_alloc(&v, m, 0, n, n_dec, 2 * V + 3 * (size_t)n_dec, &p, err)) return -1;
    int *accepted = (int *)(p + 2 * V), row = 0, rc = -1;
    for (int i = 0; i < n_dec; i++) {
        sequence_t *s = dec[i];
        int k = s->n_drafts < seq_room_drafts(s) ? s->n_drafts : seq_room_drafts(s);
        v.tokens[row] = s->last;
        memcpy(v.tokens + row + 1, s->drafts, sizeof(int32_t) * (size_t)k);
        v.seqs[i] = (mla_seq_t){s->kv, k + 1};
        v.who[i] = s;
        v.first[i] = row;
        row += k + 1;
    }
    v.n_seqs = n_dec;
    double t0 = spex_now();
    if (model_forward(m, v.tokens, v.seqs, n_dec, v.hidden_out, NULL, v.logits, err)) goto done;
    double t1 = spex_now();
    int *old_pos = accepted + n_dec;
    for (int i = 0; i < n_dec; i++) {
        old_pos[i] = dec[i]->pos;
        accepted[i] = verify_one(m, dec[i], v.logits + (size_t)v.first[i] * v.V, v.seqs[i].n - 1, p, p + v.V, cb,
                                 user);
        seq_plan_pause(m, dec[i], old_pos[i]);
        seq_keep_hidden(dec[i], v.hidden_out + (size_t)v.first[i] * v.hid, v.hid, old_pos[i], accepted[i] + 1);
    }
    rc = phase_catchup(m, &v, accepted, old_pos, old_pos + n_dec, err);
    double t2 = spex_now();
    for (int i = 0; i < n_dec; i++) {
        dec[i]->decode_seconds += t2 - t0;
        dec[i]->stats.verify_seconds += t1 - t0;
        dec[i]->stats.draft_seconds += t2 - t1;   /* accept/reject is negligible next to the MTP forward */
    }
done:
    rows_free(&v);
    return rc;
}

/* Draft d_{j+1} for every sequence that has j drafts and wants more: one MTP
 * row each, from the previous MTP hidden state and the token it drafted. */
static int phase_chain(model_t *m, sequence_t **seqs, int n_seqs, int j, spex_err_t *err) {
    int ns = 0, max_k = 0;
    for (int i = 0; i < n_seqs; i++)
        if (!seqs[i]->done && !seqs[i]->draft_stop && seqs[i]->n_drafts == j && j < seq_max_drafts(seqs[i])) {
            ns++;
            if (seqs[i]->p.spec_k > max_k) max_k = seqs[i]->p.spec_k;
        }
    if (ns == 0) return 0;
    rows_t r;
    if (rows_alloc(&r, m, 0, ns, ns, 0, NULL, err)) return -1;
    for (int i = 0; i < n_seqs; i++) {
        sequence_t *s = seqs[i];
        if (s->done || s->draft_stop || s->n_drafts != j || j >= seq_max_drafts(s)) continue;
        int c = r.n_seqs++;
        r.tokens[c] = s->drafts[j - 1];
        memcpy(r.hidden + (size_t)c * r.hid, s->mtp_hidden, sizeof(float) * r.hid);
        r.seqs[c] = (mla_seq_t){s->kv, 1};
        r.who[c] = s;
    }
    int rc = mtp_forward_all(m, j % m->n_mtp, max_k, &r, err);
    for (int c = 0; rc == 0 && c < r.n_seqs; c++) {
        sequence_t *s = r.who[c];
        memcpy(s->mtp_hidden, r.hidden_out + (size_t)c * r.hid, sizeof(float) * r.hid);
        s->drafts[j] = seq_draft(s, r.logits + (size_t)c * r.V, j, r.V);
        s->n_drafts = j + 1;
    }
    rows_free(&r);
    return rc;
}

/* A finished sequence's prompt and output (their cached rows) into the prefix cache. */
static void remember(model_t *m, sequence_t *s) {
    s->cache_saved = true;
    int n = s->n_prompt + s->n_out;
    int32_t *t = malloc(sizeof(int32_t) * (size_t)n);
    if (!t) return;   /* only a lost cache entry */
    memcpy(t, s->prompt, sizeof(int32_t) * (size_t)s->n_prompt);
    memcpy(t + s->n_prompt, s->out, sizeof(int32_t) * (size_t)s->n_out);
    prefix_cache_insert_hidden(m->prefix, t, n, s->kv, s->mtp_canon, s->hid, s->hid_from, s->hid_len);
    free(t);
}

int engine_step(model_t *m, sequence_t **seqs, int n_seqs, engine_token_fn on_token, void *user, spex_err_t *err) {
    size_t words = (sizeof(sequence_t *) * (size_t)(n_seqs > 0 ? n_seqs : 1) + sizeof(float) - 1) / sizeof(float);
    sequence_t **dec = (sequence_t **)arena_floats(&m->step[2], words);
    if (!dec) return spex_fail(err, "out of memory");
    int n_dec = 0, rc = 0, max_k = 0, n_run = 0;
    for (int i = 0; i < n_seqs; i++) n_run += !seqs[i]->done;
    for (int i = 0; i < n_seqs; i++) {   /* the step row budget, split evenly (greedy sequences only) */
        int b = seqs[i]->p.spec_step_rows;
        bool capped = b > 0 && n_run >= 2 && seqs[i]->p.sampling.temperature <= 0;
        seqs[i]->draft_cap = !capped ? SPEX_MAX_SPEC_K : b / n_run > 1 ? b / n_run - 1 : 0;
    }
    for (int i = 0; i < n_seqs && rc == 0; i++) {
        sequence_t *s = seqs[i];
        if (s->done) continue;
        if (s->p.spec_k > max_k) max_k = s->p.spec_k;
        if (s->started) dec[n_dec++] = s;          /* decoding since an earlier step */
        else if (s->p.max_new_tokens == 0 && !s->p.prompt_logprobs) {   /* nothing to compute */
            s->started = s->done = true;
            s->finish_reason = "length";
        }
        else rc = phase_prefill(m, s, on_token, user, err);
    }
    if (rc == 0 && n_dec > 0) rc = phase_verify(m, dec, n_dec, on_token, user, err);
    double t0 = spex_now();
    for (int j = 1; j < max_k && rc == 0; j++) rc = phase_chain(m, seqs, n_seqs, j, err);
    double dt = spex_now() - t0;
    for (int i = 0; i < n_seqs && max_k > 1; i++)
        if (seqs[i]->started && !seqs[i]->done && seqs[i]->p.spec_k > 1) {
            seqs[i]->decode_seconds += dt;
            seqs[i]->stats.draft_seconds += dt;
        }
    for (int i = 0; i < n_seqs && m->prefix && rc == 0; i++)
        if (seqs[i]->done && seqs[i]->started && !seqs[i]->cache_saved) remember(m, seqs[i]);
    return rc;
}
