/* test_scheduler.c - continuous batching around engine_step (coordinator/serve/scheduler.h).
 *
 * On the golden tiny-f32 checkpoint (with tests/data/tiny-tokenizer for text):
 *   - batching never changes a greedy result: requests admitted at different
 *     steps, mixed with sampled ones and with different speculation depths,
 *     give exactly the tokens generate() gives for each alone;
 *   - stop strings cut the text at the first occurrence (also across token
 *     boundaries), and a waiter reading deltas step by step never sees bytes
 *     that are later cut;
 *   - cancellation of queued and running requests, limits (prompt length,
 *     max_tokens, context, queue, KV capacity admission order), readiness,
 *     shutdown (close, cancel, scheduler_run with a stop flag from a thread);
 *   - the metrics the scheduler feeds. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "coordinator/decode/generate.h"
#include "coordinator/serve/scheduler.h"
#include "testutil.h"

static model_t *load_tiny(void) {
    char dir[1024];
    spex_err_t err = {0};
    model_t *m = model_load(test_data_path(dir, sizeof dir, "golden/tiny-f32"), NULL, &err);
    cr_assert_not_null(m, "%s", err.msg);
    return m;
}

static tokenizer_t *load_tok(void) {
    char path[1024];
    spex_err_t err = {0};
    tokenizer_t *t = tokenizer_load(test_data_path(path, sizeof path, "tiny-tokenizer/tokenizer.json"), &err);
    cr_assert_not_null(t, "%s", err.msg);
    return t;
}

static scheduler_t *make(model_t *m, const tokenizer_t *tok, sched_config_t c) {
    spex_err_t err = {0};
    scheduler_t *s = scheduler_create(m, tok, &c, &err);
    cr_assert_not_null(s, "%s", err.msg);
    return s;
}

static sched_req_t *submit(scheduler_t *s, const int32_t *p, int n, int max_tokens, float temp, int k,
                           const char *const *stop, int n_stop) {
    sched_params_t sp = {.prompt = p, .n_prompt = n, .max_tokens = max_tokens, .spec_k = k, .stop = stop,
                         .n_stop = n_stop, .sampling = {.temperature = temp, .top_p = 1, .seed = 7}};
    sched_req_t *r;
    const char *param;
    spex_err_t err = {0};
    cr_assert_eq(scheduler_submit(s, &sp, &r, &param, &err), SCHED_OK, "%s", err.msg);
    return r;
}

static void run_all(scheduler_t *s) {
    spex_err_t err = {0};
    for (int i = 0; i < 10000 && scheduler_pending(s) > 0; i++) cr_assert_eq(scheduler_step(s, &err), 0, "%s", err.msg);
    cr_assert_eq(scheduler_pending(s), 0);
}

static void make_prompt(int32_t *p, int n, unsigned seed) {
    for (int i = 0; i < n; i++) p[i] = 2 + (int32_t)((seed * 2654435761u + (unsigned)i * 40503u) % 318u);
}

/* ---------------------------------------------------------------- batching */

Test(scheduler, greedy_tokens_do_not_depend_on_batching) {
    model_t *m = load_tiny();
    enum { N = 12, MAXT = 24 };
    int32_t prompts[N][40], lens[N];
    int32_t *ref[N];
    int n_ref[N];
    for (int i = 0; i < N; i++) {   /* each alone, through generate() without speculation */
        lens[i] = 3 + (i * 7) % 30;
        make_prompt(prompts[i], lens[i], (unsigned)i + 1);
        seq_params_t p = {.max_new_tokens = MAXT, .sampling = {.temperature = 0, .top_p = 1}, .eos = {1, {1}}};
        gen_stats_t st;
        spex_err_t err = {0};
        cr_assert_eq(generate(m, prompts[i], lens[i], &p, NULL, NULL, &ref[i], &n_ref[i], &st, &err), 0, "%s", err.msg);
    }
    scheduler_t *s = make(m, NULL, (sched_config_t){.max_running = 5, .max_queue = 64, .spec_k = 3});
    sched_req_t *r[N], *noise[4];
    spex_err_t err = {0};
    for (int i = 0; i < 4; i++) r[i] = submit(s, prompts[i], lens[i], MAXT, 0, i % 4, NULL, 0);
    for (int i = 0; i < 2; i++) noise[i] = submit(s, prompts[i + 5], lens[i + 5], 30, 1.0f, 3, NULL, 0);
    for (int st = 0; st < 3; st++) cr_assert_eq(scheduler_step(s, &err), 0, "%s", err.msg);
    for (int i = 4; i < N; i++) r[i] = submit(s, prompts[i], lens[i], MAXT, 0, -1, NULL, 0);
    for (int i = 2; i < 4; i++) noise[i] = submit(s, prompts[i], lens[i], 30, 0.8f, 2, NULL, 0);
    run_all(s);
    for (int i = 0; i < N; i++) {
        const sched_result_t *res = sched_req_result(r[i]);
        cr_assert_eq(res->n_tokens, n_ref[i], "request %d: %d tokens, alone %d", i, res->n_tokens, n_ref[i]);
        cr_assert_arr_eq(res->tokens, ref[i], sizeof(int32_t) * (size_t)n_ref[i], "request %d differs in a batch", i);
        cr_assert_eq(res->prompt_tokens, lens[i]);
        sched_req_release(r[i]);
        free(ref[i]);
    }
    for (int i = 0; i < 4; i++) sched_req_release(noise[i]);
    scheduler_free(s);
    model_free(m);
}

/* ---------------------------------------------------------------- stop strings */

/* Run one request to the end, gathering what a streaming waiter sees after each step. */
static sched_req_t *run_streamed(scheduler_t *s, const int32_t *p, int n, int max_tokens, const char *const *stop,
                                 int n_stop, char *seen, size_t *n_seen) {
    sched_req_t *r = submit(s, p, n, max_tokens, 0, 2, stop, n_stop);
    spex_err_t err = {0};
    *n_seen = 0;
    for (int i = 0; i < 1000; i++) {
        sched_update_t u;
        cr_assert_eq(sched_req_wait(r, *n_seen, 0, &u), 0);
        if (u.len) memcpy(seen + *n_seen, u.text, u.len);
        *n_seen += u.len;
        free(u.text);
        if (u.done) return r;
        cr_assert_eq(scheduler_step(s, &err), 0, "%s", err.msg);
    }
    cr_assert_fail("request did not finish");
    return r;
}

static bool is_word(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

Test(scheduler, stop_strings_cut_the_text_and_are_never_streamed) {
    model_t *m = load_tiny();
    tokenizer_t *tok = load_tok();
    scheduler_t *s = make(m, tok, (sched_config_t){.max_running = 4, .max_queue = 4, .spec_k = 2});
    int32_t *p;
    size_t n;
    spex_err_t err = {0};
    cr_assert_eq(tokenizer_encode(tok, "It is a truth", 13, true, &p, &n, &err), 0);
    static char seen[65536];
    size_t n_seen;
    sched_req_t *full = run_streamed(s, p, (int)n, 80, NULL, 0, seen, &n_seen);
    const sched_result_t *f = sched_req_result(full);
    cr_assert_eq(n_seen, f->text_len);
    cr_assert_eq(memcmp(seen, f->text, n_seen), 0, "streamed text differs from the final text");
    size_t at = 1;   /* a stop string of 3 plain letters/spaces, not at the very start */
    while (at + 3 <= f->text_len && !(is_word(f->text[at]) && (is_word(f->text[at + 1]) || f->text[at + 1] == ' ') &&
                                      is_word(f->text[at + 2])))
        at++;
    cr_assert(at + 3 <= f->text_len, "no ASCII window to use as a stop string in %zu bytes", f->text_len);
    char stop[4];
    memcpy(stop, f->text + at, 3);
    stop[3] = '\0';
    size_t first = (size_t)((const char *)memmem(f->text, f->text_len, stop, 3) - f->text);
    const char *stops[] = {"\x01\x02never", stop};
    sched_req_t *cut = run_streamed(s, p, (int)n, 80, stops, 2, seen, &n_seen);
    const sched_result_t *c = sched_req_result(cut);
    cr_assert_str_eq(c->finish_reason, "stop");
    cr_assert_eq(c->text_len, first, "cut at %zu, first '%s' at %zu", c->text_len, stop, first);
    cr_assert_eq(memcmp(c->text, f->text, first), 0);
    cr_assert_eq(n_seen, first, "a waiter saw %zu bytes, the result has %zu", n_seen, first);
    cr_assert_lt(c->n_tokens, f->n_tokens);
    cr_assert_arr_eq(c->tokens, f->tokens, sizeof(int32_t) * (size_t)c->n_tokens);
    sched_req_release(full);
    sched_req_release(cut);
    free(p);
    scheduler_free(s);
    tokenizer_free(tok);
    model_free(m);
}

/* ---------------------------------------------------------------- cancellation */

Test(scheduler, cancel_queued_and_running) {
    model_t *m = load_tiny();
    scheduler_t *s = make(m, NULL, (sched_config_t){.max_running = 1, .max_queue = 4, .spec_k = 1});
    int32_t p[8];
    make_prompt(p, 8, 3);
    spex_err_t err = {0};
    sched_req_t *a = submit(s, p, 8, 200, 0, -1, NULL, 0), *b = submit(s, p, 8, 200, 0, -1, NULL, 0);
    cr_assert_eq(scheduler_step(s, &err), 0);
    cr_assert_eq(scheduler_step(s, &err), 0);
    sched_req_cancel(b);   /* queued: done at once */
    cr_assert(sched_req_done(b));
    cr_assert_str_eq(sched_req_result(b)->finish_reason, "cancelled");
    cr_assert_not(sched_req_done(a));
    sched_req_cancel(a);   /* running: leaves at the next step */
    cr_assert_eq(scheduler_step(s, &err), 0);
    cr_assert(sched_req_done(a));
    const sched_result_t *ra = sched_req_result(a);
    cr_assert_str_eq(ra->finish_reason, "cancelled");
    cr_assert_not(ra->shutdown);
    cr_assert_gt(ra->n_tokens, 0);
    cr_assert_lt(ra->n_tokens, 200);
    cr_assert_eq(scheduler_pending(s), 0);
    sched_req_release(a);
    sched_req_release(b);
    sched_req_t *c = submit(s, p, 8, 50, 0, -1, NULL, 0);
    sched_req_release(c);   /* released unfinished = cancelled; the engine drops it */
    run_all(s);
    scheduler_free(s);
    model_free(m);
}

/* ---------------------------------------------------------------- scoring a prompt */

static sched_req_t *submit_scored(scheduler_t *s, const int32_t *p, int n, int max_tokens, int k) {
    sched_params_t sp = {.prompt = p, .n_prompt = n, .max_tokens = max_tokens, .spec_k = k, .logprobs = true,
                         .top_logprobs = 2, .prompt_logprobs = true, .sampling = {.temperature = 0, .top_p = 1}};
    sched_req_t *r;
    spex_err_t err = {0};
    cr_assert_eq(scheduler_submit(s, &sp, &r, NULL, &err), SCHED_OK, "%s", err.msg);
    return r;
}

/* max_tokens 0 with prompt_logprobs (the API's echo + max_tokens 0): the
 * prompt runs, no token is generated, finish_reason "length", and the
 * prompt's logprobs are those a request generating one token gets; a waiter
 * finds them with the end. The rows they cached serve a later request unchanged. */
Test(scheduler, max_tokens_zero_scores_the_prompt) {
    model_t *m = load_tiny();
    spex_err_t err = {0};
    cr_assert_eq(model_set_prefix_cache(m, 8u << 20, &err), 0, "%s", err.msg);
    scheduler_t *s = make(m, NULL, (sched_config_t){.spec_k = 2});
    int32_t p[37];
    make_prompt(p, 37, 5);
    for (int k = 0; k <= 2; k += 2) {
        sched_req_t *zero = submit_scored(s, p, 37, 0, k), *one = submit_scored(s, p, 37, 1, k);
        run_all(s);
        sched_update_t u;
        cr_assert_eq(sched_req_wait(zero, 0, 0, &u), 0);
        cr_assert(u.done && u.prompt_lps && u.completion_tokens == 0 && u.len == 0);
        sched_update_free(&u);
        const sched_result_t *z = sched_req_result(zero), *o = sched_req_result(one);
        cr_assert_str_eq(z->finish_reason, "length");
        cr_assert_eq(z->n_tokens, 0);
        cr_assert_eq(z->text_len, 0);
        cr_assert_eq(z->max_tokens, 0, "0 is not \"as many as fit\"");
        cr_assert_eq(o->n_tokens, 1);
        cr_assert(z->prompt_logprobs && o->prompt_logprobs);
        for (int t = 1; t < 37; t++)
            cr_assert_eq(memcmp(&z->prompt_logprobs[t], &o->prompt_logprobs[t], sizeof(token_logprob_t)), 0,
                         "spec-k %d: prompt position %d", k, t);
        sched_req_release(zero);
        sched_req_release(one);
    }
    seq_params_t gp = {.max_new_tokens = 12, .sampling = {.temperature = 0, .top_p = 1}};
    int32_t *ref, *got;
    int n_ref, n_got;
    gen_stats_t st;
    prefix_cache_t *pc = m->prefix;
    m->prefix = NULL;
    cr_assert_eq(generate(m, p, 37, &gp, NULL, NULL, &ref, &n_ref, &st, &err), 0, "%s", err.msg);
    m->prefix = pc;
    uint64_t hits = prefix_cache_stats(pc).hit_tokens;
    cr_assert_eq(generate(m, p, 37, &gp, NULL, NULL, &got, &n_got, &st, &err), 0, "%s", err.msg);
    cr_assert_gt(prefix_cache_stats(pc).hit_tokens, hits, "the cache these requests wrote was used");
    cr_assert_eq(n_got, n_ref);
    cr_assert_arr_eq(got, ref, sizeof(int32_t) * (size_t)n_ref);
    free(ref), free(got);
    scheduler_free(s);
    model_free(m);
}

/* ---------------------------------------------------------------- limits */

static sched_status_t try_submit(scheduler_t *s, const int32_t *p, int n, int max_tokens, const char **param,
                                 sched_req_t **r) {
    sched_params_t sp = {.prompt = p, .n_prompt = n, .max_tokens = max_tokens, .spec_k = -1,
                         .sampling = {.temperature = 0, .top_p = 1}};
    spex_err_t err = {0};
    return scheduler_submit(s, &sp, r, param, &err);
}

Test(scheduler, limits) {
    model_t *m = load_tiny();
    scheduler_t *s = make(m, NULL, (sched_config_t){.max_running = 2, .max_queue = 1, .max_prompt_tokens = 20,
                                                    .max_tokens_limit = 100, .spec_k = 2});
    int32_t p[300];
    make_prompt(p, 300, 9);
    const char *param;
    sched_req_t *r[4];
    cr_assert_eq(try_submit(s, p, 21, 5, &param, &r[0]), SCHED_INVALID);
    cr_assert_str_eq(param, "prompt");
    cr_assert_eq(try_submit(s, p, 0, 5, &param, &r[0]), SCHED_INVALID);
    cr_assert_eq(try_submit(s, p, 10, 101, &param, &r[0]), SCHED_INVALID);
    cr_assert_str_eq(param, "max_tokens");
    p[3] = 320;
    cr_assert_eq(try_submit(s, p, 10, 5, &param, &r[0]), SCHED_INVALID, "token outside the vocabulary");
    p[3] = 5;
    for (int i = 0; i < 3; i++) cr_assert_eq(try_submit(s, p, 10, 5, &param, &r[i]), SCHED_OK);   /* 2 slots + 1 queued */
    cr_assert_eq(try_submit(s, p, 10, 5, &param, &r[3]), SCHED_QUEUE_FULL);
    sched_req_t *dflt;
    cr_assert_eq(try_submit(s, p, 10, SCHED_MAX_TOKENS_FIT, &param, &r[3]), SCHED_QUEUE_FULL);
    run_all(s);
    cr_assert_eq(try_submit(s, p, 10, SCHED_MAX_TOKENS_FIT, &param, &dflt), SCHED_OK);
    run_all(s);
    cr_assert_eq(sched_req_result(dflt)->max_tokens, 100, "the limit, below the context room");
    for (int i = 0; i < 3; i++) sched_req_release(r[i]);
    sched_req_release(dflt);
    scheduler_free(s);
    model_free(m);
}

Test(scheduler, context_and_kv_capacity) {
    model_t *m = load_tiny();
    int ctx = m->rope.max_pos;
    /* room for one 10 + 40 + k + 1 token sequence at a time */
    scheduler_t *s = make(m, NULL, (sched_config_t){.max_running = 4, .max_queue = 4, .spec_k = 2,
                                                    .kv_capacity_tokens = 60});
    int32_t p[16];
    make_prompt(p, 16, 4);
    const char *param;
    sched_req_t *a, *b;
    cr_assert_eq(try_submit(s, p, 10, 60, &param, &a), SCHED_INVALID, "needs more than the KV capacity");
    scheduler_free(s);
    s = make(m, NULL, (sched_config_t){.max_running = 4, .max_queue = 4, .spec_k = 2});
    cr_assert_eq(try_submit(s, p, 10, ctx, &param, &a), SCHED_INVALID, "prompt + max_tokens beyond the context");
    scheduler_free(s);
    s = make(m, NULL, (sched_config_t){.max_running = 4, .max_queue = 4, .spec_k = 2, .kv_capacity_tokens = 60});
    cr_assert_eq(try_submit(s, p, 10, 40, &param, &a), SCHED_OK);
    cr_assert_eq(try_submit(s, p, 10, 40, &param, &b), SCHED_OK);
    spex_err_t err = {0};
    for (int i = 0; i < 1000 && !sched_req_done(b); i++) {
        cr_assert_eq(scheduler_step(s, &err), 0, "%s", err.msg);
        sched_update_t u;
        sched_req_wait(b, 0, 0, &u);
        free(u.text);
        if (u.completion_tokens > 0) cr_assert(sched_req_done(a), "b started while a held the KV capacity");
    }
    cr_assert(sched_req_done(b));
    cr_assert_gt(sched_req_result(b)->queue_seconds, 0);
    sched_req_release(a);
    sched_req_release(b);
    scheduler_free(s);
    model_free(m);
}

/* ---------------------------------------------------------------- readiness and shutdown */

Test(scheduler, readiness) {
    model_t *m = load_tiny();
    scheduler_t *s = make(m, NULL, (sched_config_t){.max_running = 2, .spec_k = 0});
    char why[128];
    cr_assert(scheduler_ready(s, why, sizeof why));
    scheduler_set_ready(s, false, "worker 3 has not answered");
    cr_assert_not(scheduler_ready(s, why, sizeof why));
    cr_assert_str_eq(why, "worker 3 has not answered");
    int32_t p[4] = {5, 6, 7, 8};
    const char *param;
    sched_req_t *r;
    cr_assert_eq(try_submit(s, p, 4, 3, &param, &r), SCHED_UNAVAILABLE);
    scheduler_set_ready(s, true, NULL);
    cr_assert_eq(try_submit(s, p, 4, 3, &param, &r), SCHED_OK);
    run_all(s);
    sched_req_release(r);
    scheduler_free(s);
    model_free(m);
}

Test(scheduler, close_and_cancel_running) {
    model_t *m = load_tiny();
    scheduler_t *s = make(m, NULL, (sched_config_t){.max_running = 1, .max_queue = 4, .spec_k = 1});
    int32_t p[6] = {5, 6, 7, 8, 9, 10};
    const char *param;
    sched_req_t *a, *b, *c;
    spex_err_t err = {0};
    cr_assert_eq(try_submit(s, p, 6, 200, &param, &a), SCHED_OK);
    cr_assert_eq(try_submit(s, p, 6, 200, &param, &b), SCHED_OK);
    cr_assert_eq(scheduler_step(s, &err), 0);
    scheduler_close(s);
    cr_assert(sched_req_done(b));
    cr_assert(sched_req_result(b)->shutdown);
    cr_assert_eq(try_submit(s, p, 6, 5, &param, &c), SCHED_UNAVAILABLE);
    cr_assert_not(sched_req_done(a));
    scheduler_cancel_running(s);
    cr_assert(sched_req_done(a));
    cr_assert_str_eq(sched_req_result(a)->finish_reason, "cancelled");
    cr_assert(sched_req_result(a)->shutdown);
    sched_req_release(a);
    sched_req_release(b);
    scheduler_free(s);
    model_free(m);
}

/* The engine thread runs scheduler_run; the test thread submits and waits.
 * The backend-metrics hook (called on the engine thread after every step) is
 * used as a gate: once armed, it holds the engine thread after the step that
 * gave `watched` its first token, until the test has raised the stop flag. So
 * the flag is seen while that request is certainly running, however fast the
 * model is (the tiny model generates a whole context in ~30 ms). */
typedef struct runner {
    scheduler_t *s;
    volatile sig_atomic_t stop;
    double grace;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    sched_req_t *watched;   /* armed when set */
    bool held;
} runner_t;

static void *run_thread(void *arg) {
    runner_t *r = arg;
    scheduler_run(r->s, &r->stop, r->grace);
    return NULL;
}

static void gate(void *user, metrics_backend_t *b) {
    (void)b;   /* present stays false: no wire series */
    runner_t *r = user;
    pthread_mutex_lock(&r->mu);
    if (r->watched && !r->held) {
        sched_update_t u;
        sched_req_wait(r->watched, 0, 0, &u);
        free(u.text);
        if (u.completion_tokens > 0 && !u.done) {
            r->held = true;
            pthread_cond_broadcast(&r->cv);
            while (!r->stop) pthread_cond_wait(&r->cv, &r->mu);
        }
    }
    pthread_mutex_unlock(&r->mu);
}

/* Start the engine thread; run one quick request through it; then submit
 * `slow` (plus `queued` behind it when max_running is 1), hold the engine
 * right after slow's first token and raise the stop flag. */
static void run_until_stop(runner_t *rn, pthread_t *th, sched_req_t **quick, sched_req_t **slow,
                           sched_req_t **queued) {
    const char *param;
    int32_t p[6] = {5, 6, 7, 8, 9, 10};
    cr_assert_eq(pthread_create(th, NULL, run_thread, rn), 0);
    cr_assert_eq(try_submit(rn->s, p, 6, 8, &param, quick), SCHED_OK);
    sched_update_t u = {0};
    for (int i = 0; i < 400 && !u.done; i++) {   /* the engine thread finishes it on its own */
        sched_req_wait(*quick, 0, 0.05, &u);
        free(u.text);
    }
    cr_assert(u.done);
    cr_assert_eq(sched_req_result(*quick)->n_tokens, 8);
    pthread_mutex_lock(&rn->mu);
    cr_assert_eq(try_submit(rn->s, p, 6, 240, &param, slow), SCHED_OK);
    if (queued) cr_assert_eq(try_submit(rn->s, p, 5, 20, &param, queued), SCHED_OK);
    rn->watched = *slow;
    while (!rn->held) pthread_cond_wait(&rn->cv, &rn->mu);
    rn->stop = SIGTERM;
    pthread_cond_broadcast(&rn->cv);
    pthread_mutex_unlock(&rn->mu);
}

static runner_t *runner_new(model_t *m, metrics_t *mt, int max_running, double grace) {
    runner_t *rn = calloc(1, sizeof *rn);
    pthread_mutex_init(&rn->mu, NULL);
    pthread_cond_init(&rn->cv, NULL);
    rn->grace = grace;
    rn->s = make(m, NULL, (sched_config_t){.max_running = max_running, .max_queue = 4, .spec_k = 2, .metrics = mt,
                                           .backend_metrics = gate, .backend_user = rn});
    return rn;
}

static void runner_free(runner_t *rn) {
    scheduler_free(rn->s);
    pthread_mutex_destroy(&rn->mu);
    pthread_cond_destroy(&rn->cv);
    free(rn);
}

Test(scheduler, run_serves_other_threads_and_stops_on_the_flag) {
    model_t *m = load_tiny();
    metrics_t *mt = metrics_create();
    runner_t *rn = runner_new(m, mt, 1, 0);   /* grace 0: what runs is cancelled at once */
    pthread_t th;
    sched_req_t *quick, *slow, *queued;
    run_until_stop(rn, &th, &quick, &slow, &queued);
    double t0 = spex_now();
    cr_assert_eq(pthread_join(th, NULL), 0);
    cr_assert_lt(spex_now() - t0, 5.0);
    cr_assert(sched_req_done(slow));
    const sched_result_t *r = sched_req_result(slow);
    cr_assert_str_eq(r->finish_reason, "cancelled");
    cr_assert(r->shutdown);
    cr_assert_gt(r->n_tokens, 0);
    cr_assert_lt(r->n_tokens, 240);
    cr_assert(sched_req_done(queued), "the queued request ends when the server closes");
    cr_assert_str_eq(sched_req_result(queued)->finish_reason, "cancelled");
    cr_assert(sched_req_result(queued)->shutdown);
    cr_assert_eq(sched_req_result(queued)->n_tokens, 0);
    const char *param;
    sched_req_t *late;
    int32_t p[3] = {5, 6, 7};
    cr_assert_eq(try_submit(rn->s, p, 3, 4, &param, &late), SCHED_UNAVAILABLE);
    char *text = metrics_render(mt, NULL);
    cr_assert(strstr(text, "spex_time_to_first_token_seconds_count 2"), "%s", text);
    cr_assert(strstr(text, "spex_spec_drafted_total{position=\"1\"}"), "%s", text);
    cr_assert(strstr(text, "spex_requests_finished_total{finish_reason=\"length\"} 1"), "%s", text);
    cr_assert(strstr(text, "spex_requests_finished_total{finish_reason=\"cancelled\"} 2"), "%s", text);
    cr_assert(strstr(text, "spex_running_sequences 0"), "%s", text);
    cr_assert_null(strstr(text, "spex_wire_bytes_total"), "no backend: no wire series");
    free(text);
    sched_req_release(quick);
    sched_req_release(slow);
    sched_req_release(queued);
    runner_free(rn);
    metrics_free(mt);
    model_free(m);
}

Test(scheduler, run_lets_running_requests_finish_within_the_grace_period) {
    model_t *m = load_tiny();
    metrics_t *mt = metrics_create();   /* the gate is the backend hook, which runs only with metrics */
    runner_t *rn = runner_new(m, mt, 4, 30);
    pthread_t th;
    sched_req_t *quick, *slow;
    run_until_stop(rn, &th, &quick, &slow, NULL);
    cr_assert_eq(pthread_join(th, NULL), 0);
    const sched_result_t *r = sched_req_result(slow);
    cr_assert(!strcmp(r->finish_reason, "length") || !strcmp(r->finish_reason, "stop"), "%s", r->finish_reason);
    cr_assert_not(r->shutdown);
    cr_assert_eq(r->n_tokens, 234, "the whole greedy continuation (EOS after 234 tokens): %d", r->n_tokens);
    sched_req_release(quick);
    sched_req_release(slow);
    runner_free(rn);
    metrics_free(mt);
    model_free(m);
}

/* ---------------------------------------------------------------- metrics */

static void fake_backend(void *user, metrics_backend_t *b) {
    (void)user;
    b->present = true;
    b->wire_bytes_raw = 1000;
    b->wire_bytes_compressed = 400;
    b->n_ranks = 2;
    b->expert_seconds[0] = 0.5;
    b->expert_seconds[1] = 0.25;
}

Test(scheduler, metrics_exposition) {
    model_t *m = load_tiny();
    metrics_t *mt = metrics_create();
    scheduler_t *s = make(m, NULL, (sched_config_t){.max_running = 4, .spec_k = 2, .metrics = mt,
                                                    .backend_metrics = fake_backend});
    int32_t p[6] = {5, 6, 7, 8, 9, 10};
    const char *param;
    sched_req_t *r[3];
    for (int i = 0; i < 3; i++) cr_assert_eq(try_submit(s, p, 6, 10, &param, &r[i]), SCHED_OK);
    run_all(s);
    int gen = 0;
    for (int i = 0; i < 3; i++) gen += sched_req_result(r[i])->n_tokens;
    metrics_request(mt, "/v1/completions", 200);
    metrics_request(mt, "/v1/completions", 200);
    metrics_request(mt, "/v1/completions", 429);
    char *text = metrics_render(mt, NULL), want[128];
    cr_assert(strstr(text, "spex_http_requests_total{endpoint=\"/v1/completions\",status=\"200\"} 2\n"), "%s", text);
    cr_assert(strstr(text, "spex_http_requests_total{endpoint=\"/v1/completions\",status=\"429\"} 1\n"));
    cr_assert(strstr(text, "spex_prompt_tokens_total 18\n"));
    snprintf(want, sizeof want, "spex_generation_tokens_total %d\n", gen);
    cr_assert(strstr(text, want), "%s", want);
    snprintf(want, sizeof want, "spex_inter_token_latency_seconds_count %d\n", gen - 3);   /* all but each first */
    cr_assert(strstr(text, want), "%s", want);
    cr_assert(strstr(text, "spex_wire_bytes_total{kind=\"compressed\"} 400\n"));
    cr_assert(strstr(text, "spex_expert_seconds_total{rank=\"1\"} 0.25\n"));
    cr_assert(strstr(text, "spex_time_to_first_token_seconds_bucket{le=\"+Inf\"} 3\n"));
    /* histogram buckets are cumulative */
    const char *b = text;
    unsigned long long prev = 0, v;
    while ((b = strstr(b, "spex_request_duration_seconds_bucket{le=\""))) {
        b = strchr(b, '}') + 1;
        cr_assert_eq(sscanf(b, " %llu", &v), 1);
        cr_assert_geq(v, prev);
        prev = v;
    }
    cr_assert_eq(prev, 3);
    free(text);
    for (int i = 0; i < 3; i++) sched_req_release(r[i]);
    scheduler_free(s);
    metrics_free(mt);
    model_free(m);
}
