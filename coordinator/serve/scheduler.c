/* scheduler.c - see scheduler.h.
 *
 * Data layout: the queue is a singly linked FIFO of requests; the running set
 * is two parallel arrays (requests and their sequences) in admission order, so
 * engine_step always sees the sequences in a stable order. Fields of a request
 * are grouped by who may touch them: immutable after submit, engine thread
 * only, or under the scheduler mutex. */
#include "scheduler.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/strbuf.h"
#include "coordinator/decode/generate.h"

struct sched_req {
    scheduler_t *s;
    pthread_cond_t cv;
    /* immutable after submit */
    int32_t *prompt;
    int n_prompt;
    seq_params_t p;
    char **stop;
    int n_stop;
    long cap;                /* KV cache tokens this request reserves */
    double t_submit;
    /* engine thread only */
    sequence_t *seq;
    utf8_stream_t u8;
    int step_tokens;         /* tokens emitted in the current step */
    double t_prev;           /* when the previous tokens were emitted */
    /* under s->mu */
    struct sched_req *next;  /* queue link */
    int refs;
    bool queued, cancelled, done, stop_hit, shutdown;
    strbuf_t text;           /* the completion's text so far */
    size_t released;         /* bytes of text no stop string can take back */
    int n_tokens;
    double t_admit, t_first;
    int32_t *tokens;         /* final tokens (taken from the sequence) */
    sched_token_t *toks;     /* [n_info] per token: id and text end */
    token_logprob_t *lps;    /* [n_info] when p.logprobs */
    token_logprob_t *prompt_lps;   /* [n_prompt] when p.prompt_logprobs (taken from the sequence) */
    int n_info, cap_info;
    logit_bias_entry_t *bias;   /* immutable after submit: p.adjust.bias points here */
    char *error;
    sched_result_t res;
};

struct scheduler {
    model_t *m;
    const tokenizer_t *tok;
    sched_config_t cfg;
    int context;
    eos_set_t eos;                /* the tokenizer's EOS + cfg.extra_eos */
    size_t kv_bytes_per_token;
    pthread_mutex_t mu;
    pthread_cond_t work;          /* engine thread waits here when idle */
    sched_req_t *head, *tail;     /* queue */
    int n_queued;
    sched_req_t **run;            /* [max_running] */
    sequence_t **seqs;            /* [max_running] */
    int n_running;
    long kv_reserved;
    bool closed, ready, healthy;
    char why[SPEX_ERR_MSG_MAX];
    double next_health;
    int hint;                     /* index of the last sequence on_token saw */
};

/* ---------------------------------------------------------------- helpers */

static void req_free(sched_req_t *r) {
    pthread_cond_destroy(&r->cv);
    for (int i = 0; i < r->n_stop; i++) free(r->stop[i]);
    free(r->stop);
    free(r->prompt);
    sb_free(&r->text);
    free(r->tokens);
    free(r->toks);
    free(r->lps);
    free(r->prompt_lps);
    free(r->bias);
    free(r->error);
    free(r);
}

/* Drop one reference (under s->mu). */
static void req_unref(sched_req_t *r) {
    if (--r->refs == 0) req_free(r);
}

/* ---------------------------------------------------------------- create */

static void apply_defaults(sched_config_t *c, int context) {
    if (c->max_running <= 0) c->max_running = 16;
    if (c->max_queue < 0) c->max_queue = 0;
    if (c->max_prompt_tokens <= 0 || c->max_prompt_tokens > context - 1) c->max_prompt_tokens = context - 1;
    if (c->max_tokens_limit <= 0 || c->max_tokens_limit > context - 1) c->max_tokens_limit = context - 1;
    if (c->kv_capacity_tokens <= 0) c->kv_capacity_tokens = (long)c->max_running * context;
}

scheduler_t *scheduler_create(model_t *m, const tokenizer_t *tok, const sched_config_t *cfg, spex_err_t *err) {
    if (cfg->spec_k < 0 || cfg->spec_k > SPEX_MAX_SPEC_K) {
        spex_fail(err, "spec_k must be in [0, %d], got %d", SPEX_MAX_SPEC_K, cfg->spec_k);
        return NULL;
    }
    if (cfg->spec_k > 0 && m->n_mtp == 0) {
        spex_fail(err, "speculation (spec_k %d) needs the model's MTP module, and none is loaded", cfg->spec_k);
        return NULL;
    }
    scheduler_t *s = calloc(1, sizeof *s);
    if (!s) { spex_fail(err, "out of memory"); return NULL; }
    s->m = m;
    s->tok = tok;
    s->cfg = *cfg;
    s->context = m->rope.max_pos;
    apply_defaults(&s->cfg, s->context);
    eos_set_add(&s->eos, tok ? tokenizer_eos_id(tok) : m->cfg.eos_token_id);
    if (eos_set_merge(&s->eos, &cfg->extra_eos)) {
        free(s);
        spex_fail(err, "more than %d stop token ids", SPEX_MAX_EOS);
        return NULL;
    }
    s->kv_bytes_per_token = sizeof(float) * (size_t)model_cache_layers(m) *
                            (size_t)(m->cfg.kv_lora_rank + m->cfg.qk_rope_head_dim);
    s->run = calloc((size_t)s->cfg.max_running, sizeof *s->run);
    s->seqs = calloc((size_t)s->cfg.max_running, sizeof *s->seqs);
    s->ready = s->healthy = true;
    if (!s->run || !s->seqs || pthread_mutex_init(&s->mu, NULL) || spex_cond_init(&s->work)) {
        free(s->run);
        free(s->seqs);
        free(s);
        spex_fail(err, "out of memory");
        return NULL;
    }
    return s;
}

void scheduler_free(scheduler_t *s) {
    if (!s) return;
    scheduler_close(s);
    scheduler_cancel_running(s);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->work);
    free(s->run);
    free(s->seqs);
    free(s);
}

const sched_config_t *scheduler_config(const scheduler_t *s) { return &s->cfg; }
int scheduler_context(const scheduler_t *s) { return s->context; }

/* ---------------------------------------------------------------- submit */

/* Resolve spec_k and max_tokens and check every limit; fills r->p and r->cap. */
static sched_status_t check_params(scheduler_t *s, const sched_params_t *p, sched_req_t *r, const char **param,
                                   spex_err_t *err) {
    const sched_config_t *c = &s->cfg;
    int V = s->m->cfg.vocab_size, n = p->n_prompt;
    *param = "prompt";
    if (n <= 0) return spex_fail(err, "the prompt is empty"), SCHED_INVALID;
    if (n > c->max_prompt_tokens)
        return spex_fail(err, "the prompt has %d tokens; this server accepts at most %d", n, c->max_prompt_tokens),
               SCHED_INVALID;
    for (int i = 0; i < n; i++)
        if (p->prompt[i] < 0 || p->prompt[i] >= V)
            return spex_fail(err, "prompt token %d is outside the vocabulary [0, %d)", p->prompt[i], V), SCHED_INVALID;
    int k = p->spec_k < 0 || p->spec_k > c->spec_k ? c->spec_k : p->spec_k;
    long room = s->context - n;
    if (room > c->max_tokens_limit) room = c->max_tokens_limit;
    if (room > c->kv_capacity_tokens - n - k - 1) room = c->kv_capacity_tokens - n - k - 1;
    bool fit = p->max_tokens < 0;   /* SCHED_MAX_TOKENS_FIT; 0 is a real limit: no new token */
    int max_tokens = fit ? (int)room : p->max_tokens;
    if (fit && room < 1)
        return spex_fail(err, "the prompt (%d tokens) leaves no room to generate in this server's context of %d "
                              "tokens", n, s->context), SCHED_INVALID;
    *param = "max_tokens";
    if (max_tokens > c->max_tokens_limit)
        return spex_fail(err, "max_tokens is %d; this server allows at most %d", max_tokens, c->max_tokens_limit),
               SCHED_INVALID;
    if ((long)n + max_tokens > s->context)
        return spex_fail(err, "this model's maximum context length is %d tokens; the request has %d prompt tokens "
                              "and max_tokens %d", s->context, n, max_tokens), SCHED_INVALID;
    long cap = (long)n + max_tokens + k + 1 < s->context ? (long)n + max_tokens + k + 1 : s->context;
    if (cap > c->kv_capacity_tokens)
        return spex_fail(err, "the request needs %ld tokens of KV cache; this server's capacity is %ld", cap,
                         c->kv_capacity_tokens), SCHED_INVALID;
    *param = NULL;
    const char *bad = sampler_check(&p->sampling);
    if (bad) return spex_fail(err, "%s", bad), SCHED_INVALID;
    if ((bad = logit_adjust_check(&p->adjust, V, param))) return spex_fail(err, "%s", bad), SCHED_INVALID;
    *param = "top_logprobs";
    if (p->logprobs && (p->top_logprobs < 0 || p->top_logprobs > SPEX_MAX_TOP_LOGPROBS))
        return spex_fail(err, "top_logprobs must be in [0, %d]", SPEX_MAX_TOP_LOGPROBS), SCHED_INVALID;
    *param = "logprobs";
    if (p->prompt_logprobs && !p->logprobs)
        return spex_fail(err, "the prompt's logprobs need logprobs"), SCHED_INVALID;
    *param = "stop";
    if (p->n_stop < 0 || p->n_stop > SCHED_MAX_STOP)
        return spex_fail(err, "at most %d stop strings are allowed", SCHED_MAX_STOP), SCHED_INVALID;
    for (int i = 0; i < p->n_stop; i++)
        if (!p->stop[i] || !p->stop[i][0] || strlen(p->stop[i]) > SCHED_MAX_STOP_LEN)
            return spex_fail(err, "stop strings must be non-empty and at most %d bytes", SCHED_MAX_STOP_LEN),
                   SCHED_INVALID;
    *param = NULL;
    r->p = (seq_params_t){.max_new_tokens = max_tokens, .sampling = p->sampling, .spec_k = k,
                          .sampled_drafts = !c->argmax_drafts, .draft_min_p = c->draft_min_p,
                          .spec_step_rows = c->spec_step_rows,
                          .eos = s->eos, .adjust = p->adjust, .logprobs = p->logprobs,
                          .top_logprobs = p->top_logprobs, .prompt_logprobs = p->prompt_logprobs};
    r->cap = cap;
    return SCHED_OK;
}

static sched_req_t *req_new(const sched_params_t *p) {
    sched_req_t *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->prompt = malloc(sizeof(int32_t) * (size_t)p->n_prompt);
    r->stop = p->n_stop > 0 ? calloc((size_t)p->n_stop, sizeof(char *)) : NULL;
    size_t nb = (size_t)p->adjust.n_bias;
    r->bias = nb ? malloc(sizeof *r->bias * nb) : NULL;
    bool ok = r->prompt && (p->n_stop == 0 || r->stop) && (nb == 0 || r->bias) && spex_cond_init(&r->cv) == 0;
    for (int i = 0; ok && i < p->n_stop; i++) ok = (r->stop[i] = strdup(p->stop[i])) != NULL;
    r->n_stop = p->n_stop;
    if (!ok) {
        for (int i = 0; i < r->n_stop && r->stop; i++) free(r->stop[i]);
        free(r->stop);
        free(r->prompt);
        free(r->bias);
        free(r);
        return NULL;
    }
    if (nb) memcpy(r->bias, p->adjust.bias, sizeof *r->bias * nb);
    memcpy(r->prompt, p->prompt, sizeof(int32_t) * (size_t)p->n_prompt);
    r->n_prompt = p->n_prompt;
    r->u8 = (utf8_stream_t)UTF8_STREAM_INIT;
    return r;
}

sched_status_t scheduler_submit(scheduler_t *s, const sched_params_t *p, sched_req_t **out, const char **param,
                                spex_err_t *err) {
    const char *dummy;
    if (!param) param = &dummy;
    *param = NULL;
    *out = NULL;
    sched_req_t probe = {0};
    sched_status_t st = check_params(s, p, &probe, param, err);
    if (st != SCHED_OK) return st;
    sched_req_t *r = req_new(p);
    if (!r) return spex_fail(err, "out of memory"), SCHED_NOMEM;
    r->s = s;
    r->p = probe.p;
    r->p.adjust.bias = r->bias;
    r->cap = probe.cap;
    r->t_submit = spex_now();
    pthread_mutex_lock(&s->mu);
    if (s->closed || !s->ready || !s->healthy) {
        spex_fail(err, "%s", s->closed ? "the server is shutting down" : s->why[0] ? s->why : "the server is not ready");
        st = SCHED_UNAVAILABLE;
    } else if (s->n_queued >= s->cfg.max_queue + (s->cfg.max_running - s->n_running)) {
        spex_fail(err, "the server is busy: %d requests running and %d queued; retry later", s->n_running,
                  s->n_queued);
        st = SCHED_QUEUE_FULL;
    } else {
        r->refs = 2;
        r->queued = true;
        if (s->tail) s->tail->next = r;
        else s->head = r;
        s->tail = r;
        s->n_queued++;
        pthread_cond_signal(&s->work);
    }
    pthread_mutex_unlock(&s->mu);
    if (st != SCHED_OK) { req_free(r); return st; }
    *out = r;
    return SCHED_OK;
}

/* ---------------------------------------------------------------- waiting */

/* Tokens [0, n) whose text is released (all once done; under s->mu). */
static int tokens_ready(const sched_req_t *r, int from) {
    if (r->done) return r->n_info;
    int n = from < 0 ? 0 : from;
    while (n < r->n_info && r->toks[n].text_end <= r->released) n++;
    return n;
}

/* Copy tokens [from, ready) into u (under s->mu); -1 when out of memory. */
static int copy_tokens(const sched_req_t *r, int from, sched_update_t *u) {
    int n = tokens_ready(r, from) - from;
    if (n <= 0) return 0;
    u->toks = malloc(sizeof *u->toks * (size_t)n);
    u->lps = r->lps ? malloc(sizeof *u->lps * (size_t)n) : NULL;
    if (!u->toks || (r->lps && !u->lps)) return -1;
    memcpy(u->toks, r->toks + from, sizeof *u->toks * (size_t)n);
    if (r->lps) memcpy(u->lps, r->lps + from, sizeof *u->lps * (size_t)n);
    u->n_toks = n;
    return 0;
}

void sched_update_free(sched_update_t *u) {
    free(u->text);
    free(u->toks);
    free(u->lps);
    memset(u, 0, sizeof *u);
}

int sched_req_wait(sched_req_t *r, size_t from, double timeout_s, sched_update_t *u) {
    return sched_req_wait_tokens(r, from, -1, timeout_s, u);
}

int sched_req_wait_tokens(sched_req_t *r, size_t from, int tok_from, double timeout_s, sched_update_t *u) {
    scheduler_t *s = r->s;
    memset(u, 0, sizeof *u);
    struct timespec until = spex_timespec(spex_now() + (timeout_s > 0 ? timeout_s : 0));
    pthread_mutex_lock(&s->mu);
    while (!r->done && r->released <= from && (tok_from < 0 || tokens_ready(r, tok_from) <= tok_from) &&
           timeout_s > 0)
        if (pthread_cond_timedwait(&r->cv, &s->mu, &until) == ETIMEDOUT) break;
    int rc = tok_from >= 0 && copy_tokens(r, tok_from, u) ? -1 : 0;
    if (r->released > from) {
        u->len = r->released - from;
        u->text = malloc(u->len + 1);
        if (u->text) {
            memcpy(u->text, r->text.p + from, u->len);
            u->text[u->len] = '\0';
        } else {
            u->len = 0;
            rc = -1;
        }
    }
    if (rc) { free(u->toks); free(u->lps); u->toks = NULL; u->lps = NULL; u->n_toks = 0; }
    u->completion_tokens = r->n_tokens;
    u->prompt_lps = r->prompt_lps;
    u->done = r->done && rc == 0;
    pthread_mutex_unlock(&s->mu);
    return rc;
}

bool sched_req_done(sched_req_t *r) {
    pthread_mutex_lock(&r->s->mu);
    bool d = r->done;
    pthread_mutex_unlock(&r->s->mu);
    return d;
}

const sched_result_t *sched_req_result(const sched_req_t *r) { return &r->res; }

/* ---------------------------------------------------------------- finishing (under s->mu) */

/* Flush held UTF-8 bytes and release all text: the sequence has ended. */
static void req_flush_text(sched_req_t *r) {
    char *tail = sb_reserve(&r->text, 4);
    if (tail) sb_commit(&r->text, utf8_stream_flush(&r->u8, tail));
    r->released = r->text.n;
}

/* Mark done, fill the result, wake the waiter, drop the engine's reference.
 * seq (may be NULL) is freed here. */
static void req_finish(scheduler_t *s, sched_req_t *r, sequence_t *seq, const char *reason, const char *error) {
    double now = spex_now();
    sched_result_t *res = &r->res;
    if (seq) {
        r->tokens = seq->out;   /* take the buffer */
        res->n_tokens = seq->n_out;
        res->prefill_seconds = seq->prefill_seconds;
        res->decode_seconds = seq->decode_seconds;
        res->spec = seq->stats;
        seq->out = NULL;
        if (seq->prompt_lp) r->prompt_lps = seq->prompt_lp;   /* take it too (unless the first token did) */
        seq->prompt_lp = NULL;
        if (s->cfg.metrics) metrics_spec(s->cfg.metrics, &seq->stats);
        sequence_free(seq);
    }
    req_flush_text(r);
    if (error) r->error = strdup(error);
    res->finish_reason = reason;
    res->shutdown = r->shutdown;
    res->error = error ? (r->error ? r->error : "engine failure") : NULL;
    res->text = r->text.p ? r->text.p : "";
    res->text_len = r->text.n;
    res->tokens = r->tokens;
    res->token_info = r->toks;
    res->logprobs = r->lps;
    res->prompt_logprobs = r->prompt_lps;
    res->n_token_info = r->n_info;
    res->prompt_tokens = r->n_prompt;
    res->max_tokens = r->p.max_new_tokens;
    res->spec_k = r->p.spec_k;
    res->queue_seconds = (r->t_admit > 0 ? r->t_admit : now) - r->t_submit;
    res->ttft_seconds = r->t_first > 0 ? r->t_first - r->t_submit : 0;
    res->total_seconds = now - r->t_submit;
    r->done = true;
    if (s->cfg.metrics)
        metrics_request_done(s->cfg.metrics, &(metrics_done_t){reason, r->n_prompt, res->n_tokens, res->queue_seconds,
                                                               res->total_seconds, res->prefill_seconds,
                                                               res->decode_seconds});
    pthread_cond_broadcast(&r->cv);
    req_unref(r);
}

/* Remove running slot i (keeping admission order). */
static void run_remove(scheduler_t *s, int i) {
    s->kv_reserved -= s->run[i]->cap;
    memmove(s->run + i, s->run + i + 1, sizeof *s->run * (size_t)(s->n_running - i - 1));
    memmove(s->seqs + i, s->seqs + i + 1, sizeof *s->seqs * (size_t)(s->n_running - i - 1));
    s->n_running--;
}

static sched_req_t *queue_pop(scheduler_t *s) {
    sched_req_t *r = s->head;
    if (!r) return NULL;
    s->head = r->next;
    if (!s->head) s->tail = NULL;
    r->next = NULL;
    r->queued = false;
    s->n_queued--;
    return r;
}

static void queue_remove(scheduler_t *s, sched_req_t *r) {
    sched_req_t **pp = &s->head, *prev = NULL;
    while (*pp && *pp != r) { prev = *pp; pp = &(*pp)->next; }
    if (!*pp) return;
    *pp = r->next;
    if (s->tail == r) s->tail = prev;
    r->next = NULL;
    r->queued = false;
    s->n_queued--;
}

void sched_req_cancel(sched_req_t *r) {
    scheduler_t *s = r->s;
    pthread_mutex_lock(&s->mu);
    if (!r->done && !r->cancelled) {
        r->cancelled = true;
        if (r->queued) {
            queue_remove(s, r);
            req_finish(s, r, NULL, "cancelled", NULL);
        }
    }
    pthread_mutex_unlock(&s->mu);
}

void sched_req_release(sched_req_t *r) {
    if (!r) return;
    sched_req_cancel(r);
    scheduler_t *s = r->s;
    pthread_mutex_lock(&s->mu);
    req_unref(r);
    pthread_mutex_unlock(&s->mu);
}

/* ---------------------------------------------------------------- tokens (engine thread) */

/* Longest suffix of text[from, len) that is a proper prefix of a stop string. */
static size_t stop_partial(const sched_req_t *r, size_t from) {
    size_t best = 0, avail = r->text.n - from;
    for (int i = 0; i < r->n_stop; i++) {
        size_t sl = strlen(r->stop[i]);
        for (size_t k = sl - 1 < avail ? sl - 1 : avail; k > best; k--)
            if (!memcmp(r->text.p + r->text.n - k, r->stop[i], k)) { best = k; break; }
    }
    return best;
}

/* After new text: cut at a stop string (returns true) or release what is decided. */
static bool req_check_stop(sched_req_t *r) {
    if (r->n_stop == 0) { r->released = r->text.n; return false; }
    size_t first = r->text.n;
    for (int i = 0; i < r->n_stop; i++) {   /* a match can only start in the unreleased part */
        size_t sl = strlen(r->stop[i]);
        for (size_t p = r->released; p + sl <= r->text.n && p < first; p++)
            if (!memcmp(r->text.p + p, r->stop[i], sl)) { first = p; break; }
    }
    if (first < r->text.n) {
        sb_truncate(&r->text, first);
        r->released = first;
        r->stop_hit = true;
        r->u8.n_pending = 0;   /* bytes after the cut are dropped too */
        return true;
    }
    r->released = r->text.n - stop_partial(r, r->released);
    return false;
}

/* Append a token's text (under s->mu). Returns true if a stop string ended it. */
static bool req_push_text(scheduler_t *s, sched_req_t *r, int32_t tok) {
    size_t len = 0;
    const char *b = s->tok && !tokenizer_is_special(s->tok, tok) ? tokenizer_token_bytes(s->tok, tok, &len) : NULL;
    if (!b || len == 0 || eos_set_has(&s->eos, tok)) return false;   /* a stop token has no text */
    char *tail = sb_reserve(&r->text, len + 4);   /* a token's bytes + up to 3 held back */
    if (!tail) return false;   /* out of memory: the text stops growing */
    sb_commit(&r->text, utf8_stream_push(&r->u8, b, len, tail));
    return req_check_stop(r);
}

/* Keep the token, its text end and logprobs (under s->mu). Out of memory
 * only stops the record (results then hold fewer entries than tokens). */
static void req_record(sched_req_t *r, const sequence_t *seq, int32_t tok) {
    if (r->n_info < r->n_tokens - 1) return;   /* an earlier record failed */
    if (r->n_info == r->cap_info) {
        int cap = r->cap_info ? 2 * r->cap_info : 64;
        sched_token_t *t = realloc(r->toks, sizeof *t * (size_t)cap);
        if (t) r->toks = t;
        token_logprob_t *l = r->p.logprobs && t ? realloc(r->lps, sizeof *l * (size_t)cap) : NULL;
        if (l) r->lps = l;
        if (!t || (r->p.logprobs && !l)) return;
        r->cap_info = cap;
    }
    r->toks[r->n_info] = (sched_token_t){tok, r->text.n};
    if (r->p.logprobs) r->lps[r->n_info] = seq->lp[seq->n_out - 1];
    r->n_info++;
}

static sched_req_t *find_running(scheduler_t *s, const sequence_t *seq) {
    if (s->hint < s->n_running && s->seqs[s->hint] == seq) return s->run[s->hint];
    for (int i = 0; i < s->n_running; i++)
        if (s->seqs[i] == seq) { s->hint = i; return s->run[i]; }
    return NULL;
}

static int on_token(void *user, sequence_t *seq, int32_t tok) {
    scheduler_t *s = user;
    sched_req_t *r = find_running(s, seq);
    if (!r) return 1;
    double now = spex_now();
    pthread_mutex_lock(&s->mu);
    bool first = r->n_tokens == 0;
    r->n_tokens++;
    if (first) {
        r->t_first = r->t_prev = now;
        if (s->cfg.metrics) metrics_ttft(s->cfg.metrics, now - r->t_submit);
        if (seq->prompt_lp) r->prompt_lps = seq->prompt_lp, seq->prompt_lp = NULL;   /* for a stream's echo */
    } else {
        r->step_tokens++;
    }
    bool stop = req_push_text(s, r, tok) || r->cancelled;
    req_record(r, seq, tok);
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&s->mu);
    return stop;
}

/* ---------------------------------------------------------------- the step */

static void publish_gauges(scheduler_t *s) {
    if (!s->cfg.metrics) return;
    long used = 0;
    for (int i = 0; i < s->n_running; i++) used += s->seqs[i] ? s->seqs[i]->pos : 0;
    metrics_gauges_t g = {.queue_depth = s->n_queued, .running = s->n_running, .kv_reserved_tokens = s->kv_reserved,
                          .kv_used_tokens = used, .kv_capacity_tokens = s->cfg.kv_capacity_tokens,
                          .kv_bytes_per_token = s->kv_bytes_per_token, .ready = s->ready && s->healthy,
                          .has_prefix = s->m->prefix != NULL};
    if (s->m->prefix) g.prefix = prefix_cache_stats(s->m->prefix);
    metrics_set_gauges(s->cfg.metrics, &g);
}

/* Drop cancelled running requests, then admit from the queue (under s->mu).
 * Admitted requests get a slot with seq == NULL; their sequences are created
 * after unlocking (a large cache allocation should not block submitters). */
static void admit(scheduler_t *s) {
    for (int i = s->n_running - 1; i >= 0; i--)
        if (s->run[i]->cancelled) {
            sched_req_t *r = s->run[i];
            sequence_t *seq = s->seqs[i];
            run_remove(s, i);
            req_finish(s, r, seq, "cancelled", NULL);
        }
    double now = spex_now();
    while (s->head && s->n_running < s->cfg.max_running && s->kv_reserved + s->head->cap <= s->cfg.kv_capacity_tokens) {
        sched_req_t *r = queue_pop(s);
        r->t_admit = now;
        s->run[s->n_running] = r;
        s->seqs[s->n_running++] = NULL;
        s->kv_reserved += r->cap;
    }
}

/* Create sequences for newly admitted slots (engine thread, unlocked: the
 * slots cannot move, only this thread removes running entries). */
static void create_sequences(scheduler_t *s) {
    for (int i = 0; i < s->n_running; i++) {
        if (s->seqs[i]) continue;
        sched_req_t *r = s->run[i];
        spex_err_t err = {0};
        sequence_t *seq = sequence_create(s->m, r->prompt, r->n_prompt, &r->p, &err);
        if (seq) { s->seqs[i] = seq; continue; }
        pthread_mutex_lock(&s->mu);
        run_remove(s, i--);
        req_finish(s, r, NULL, "error", err.msg);
        pthread_mutex_unlock(&s->mu);
    }
}

/* After a step (under s->mu): latency metrics, retire finished sequences. */
static void retire(scheduler_t *s, double now) {
    for (int i = s->n_running - 1; i >= 0; i--) {
        sched_req_t *r = s->run[i];
        sequence_t *seq = s->seqs[i];
        if (r->step_tokens > 0) {
            if (s->cfg.metrics) metrics_itl(s->cfg.metrics, (now - r->t_prev) / r->step_tokens, r->step_tokens);
            r->t_prev = now;
            r->step_tokens = 0;
        }
        if (!seq->done) continue;
        const char *reason = r->stop_hit ? "stop" : seq->finish_reason ? seq->finish_reason : "length";
        run_remove(s, i);
        req_finish(s, r, seq, reason, NULL);
    }
}

/* The engine failed: every running request ends with the error. */
static void fail_running(scheduler_t *s, const char *msg) {
    while (s->n_running > 0) {
        sched_req_t *r = s->run[s->n_running - 1];
        sequence_t *seq = s->seqs[s->n_running - 1];
        run_remove(s, s->n_running - 1);
        req_finish(s, r, seq, "error", msg);
    }
}

static void sample_backend(scheduler_t *s) {
    if (!s->cfg.backend_metrics || !s->cfg.metrics) return;
    metrics_backend_t b;
    memset(&b, 0, sizeof b);
    s->cfg.backend_metrics(s->cfg.backend_user, &b);
    metrics_set_backend(s->cfg.metrics, &b);
}

int scheduler_step(scheduler_t *s, spex_err_t *err) {
    pthread_mutex_lock(&s->mu);
    admit(s);
    pthread_mutex_unlock(&s->mu);
    create_sequences(s);
    int n = s->n_running, rc = 0;
    if (n > 0) {
        double t0 = spex_now();
        s->hint = 0;
        rc = engine_step(s->m, s->seqs, n, on_token, s, err);
        double t1 = spex_now();
        if (s->cfg.metrics) metrics_step(s->cfg.metrics, t1 - t0, n);
        pthread_mutex_lock(&s->mu);
        if (rc) fail_running(s, err->msg);
        else retire(s, t1);
        pthread_mutex_unlock(&s->mu);
        sample_backend(s);
    }
    pthread_mutex_lock(&s->mu);
    publish_gauges(s);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int scheduler_pending(scheduler_t *s) {
    pthread_mutex_lock(&s->mu);
    int n = s->n_queued + s->n_running;
    pthread_mutex_unlock(&s->mu);
    return n;
}

/* ---------------------------------------------------------------- readiness, shutdown */

void scheduler_set_ready(scheduler_t *s, bool ready, const char *why) {
    pthread_mutex_lock(&s->mu);
    s->ready = ready;
    snprintf(s->why, sizeof s->why, "%s", ready ? "" : why ? why : "not ready");
    pthread_mutex_unlock(&s->mu);
}

bool scheduler_ready(scheduler_t *s, char *why, size_t why_len) {
    pthread_mutex_lock(&s->mu);
    bool ok = s->ready && s->healthy && !s->closed;
    if (why && why_len) snprintf(why, why_len, "%s", ok ? "" : s->closed ? "shutting down" : s->why);
    pthread_mutex_unlock(&s->mu);
    return ok;
}

/* Ask the health probe, at most once a second (engine thread). */
static void poll_health(scheduler_t *s) {
    double now = spex_now();
    if (!s->cfg.health || now < s->next_health) return;
    s->next_health = now + 1.0;
    char why[sizeof s->why] = "";
    bool ok = s->cfg.health(s->cfg.health_user, why, sizeof why);
    if (!ok && !why[0]) snprintf(why, sizeof why, "a worker is not answering");
    pthread_mutex_lock(&s->mu);
    bool changed = ok != s->healthy || (!ok && strcmp(why, s->why));
    s->healthy = ok;
    if (!ok) snprintf(s->why, sizeof s->why, "%s", why);
    else if (s->ready) s->why[0] = '\0';
    publish_gauges(s);
    pthread_mutex_unlock(&s->mu);
    if (changed) spex_log(ok ? "health: ok again" : "health: unavailable (503): %s", why);
    sample_backend(s);   /* a failure found while idle reaches /metrics too */
}

void scheduler_close(scheduler_t *s) {
    pthread_mutex_lock(&s->mu);
    s->closed = true;
    sched_req_t *r;
    while ((r = queue_pop(s))) {
        r->shutdown = true;
        req_finish(s, r, NULL, "cancelled", NULL);
    }
    pthread_cond_broadcast(&s->work);
    pthread_mutex_unlock(&s->mu);
}

void scheduler_cancel_running(scheduler_t *s) {
    pthread_mutex_lock(&s->mu);
    while (s->n_running > 0) {
        int i = s->n_running - 1;
        sched_req_t *r = s->run[i];
        sequence_t *seq = s->seqs[i];
        run_remove(s, i);
        r->shutdown = true;
        req_finish(s, r, seq, "cancelled", NULL);
    }
    publish_gauges(s);
    pthread_mutex_unlock(&s->mu);
}

/* Sleep until there is work, the stop flag, or 100 ms (the flag is set from a
 * signal handler, which cannot signal a condition variable). */
static void wait_for_work(scheduler_t *s, const volatile sig_atomic_t *stop) {
    struct timespec until = spex_timespec(spex_now() + 0.1);
    pthread_mutex_lock(&s->mu);
    if (!s->head && s->n_running == 0 && !*stop) pthread_cond_timedwait(&s->work, &s->mu, &until);
    pthread_mutex_unlock(&s->mu);
}

int scheduler_run(scheduler_t *s, const volatile sig_atomic_t *stop, double grace_seconds) {
    bool closing = false;
    double deadline = 0;
    for (;;) {
        if (*stop && !closing) {
            closing = true;
            deadline = spex_now() + grace_seconds;
            spex_log("shutting down: no new requests; %d running get %.1f s to finish", s->n_running, grace_seconds);
            if (s->cfg.on_shutdown) s->cfg.on_shutdown(s->cfg.shutdown_user);
            scheduler_close(s);
        }
        if (closing && (s->n_running == 0 || spex_now() >= deadline)) break;
        poll_health(s);
        if (scheduler_pending(s) == 0) {
            wait_for_work(s, stop);
            continue;
        }
        spex_err_t err = {0};
        if (scheduler_step(s, &err)) spex_log("engine step failed: %s", err.msg);
    }
    if (s->n_running > 0) spex_log("grace period over: cancelling %d running requests", s->n_running);
    scheduler_cancel_running(s);
    return 0;
}
