/* scheduler.h - continuous batching: a request queue in front of engine_step().
 *
 * Threads. All engine work (engine_step, hence every model_forward and any MPI
 * call the expert backend makes) happens on ONE thread, the engine thread,
 * which calls scheduler_step() or scheduler_run(). Any other thread (HTTP
 * handlers) may submit requests, wait for their output, cancel and release
 * them. One mutex guards the queue and the shared part of every request; each
 * request has a condition variable its waiter sleeps on. The engine thread
 * holds the mutex only between steps and for a few instructions per emitted
 * token, never during a forward pass.
 *
 * A step:
 *   1. drop running sequences whose request was cancelled (client gone);
 *   2. admit queued requests in arrival order while a sequence slot is free
 *      (--max-running) and their KV cache capacity fits (--kv-capacity-tokens:
 *      the sum over running sequences of prompt + max_tokens + spec_k + 1);
 *      the first request that does not fit waits (no overtaking, so a long
 *      request cannot starve);
 *   3. engine_step over every running sequence: newcomers are prefilled (each
 *      in its own forward), the others verified together with their own
 *      drafts (see engine.h). The engine's kernels are row-independent, so a
 *      greedy request gives the same tokens alone or in any batch;
 *   4. retire finished sequences (EOS, max_tokens, stop string, cancelled)
 *      and free their caches.
 *
 * Output. Each emitted token is turned into text on the engine thread
 * (tokenizer bytes through a utf8_stream, so a character split across tokens
 * is released whole; special tokens give no text) and appended to the
 * request's text. Stop strings (OpenAI semantics: generation ends at the
 * first occurrence, which is cut from the text together with everything
 * after it) are checked there too; text that could still turn out to be the
 * start of a stop string is held back until it is decided, so a streaming
 * client never receives bytes that are later cut. Waiters read the released
 * text by byte offset (sched_req_wait), so they can stream deltas.
 *
 * Lifetime. scheduler_submit returns a request holding two references: the
 * submitter's and the engine's. The engine drops its own when the request
 * finishes; the submitter calls sched_req_release when it is done reading
 * (releasing an unfinished request cancels it). A request must be released
 * before scheduler_free.
 *
 * Shutdown (scheduler_run with a stop flag, set from a signal handler):
 * stop accepting (new submissions get SCHED_UNAVAILABLE, queued requests
 * finish as cancelled with `shutdown` set), let running sequences finish
 * within the grace period, cancel what is left, return. */
#ifndef SPEX_SCHEDULER_H
#define SPEX_SCHEDULER_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "coordinator/decode/engine.h"
#include "coordinator/serve/metrics.h"
#include "coordinator/tokenizer/tokenizer.h"

typedef struct scheduler scheduler_t;
typedef struct sched_req sched_req_t;

/* Readiness probe, polled on the engine thread about once a second (it may
 * talk to workers). Return true when ready; else write the reason to why. */
typedef bool (*sched_health_fn)(void *user, char *why, size_t why_len);
/* Distributed backend statistics, sampled on the engine thread after steps. */
typedef void (*sched_backend_metrics_fn)(void *user, metrics_backend_t *out);

typedef struct sched_config {
    int max_running;          /* sequences in one engine step (default 16) */
    int max_queue;            /* requests waiting beyond the free slots (0 = none) */
    long kv_capacity_tokens;  /* sum of running sequences' cache capacities; 0 = max_running * context */
    int max_prompt_tokens;    /* 0 = context - 1 */
    int max_tokens_limit;     /* largest max_tokens a request may ask for; 0 = context - 1 */
    int spec_k;               /* server's speculation depth; a request may only lower it */
    bool argmax_drafts;       /* temperature > 0: draft the MTP argmax instead of sampling it */
    float draft_min_p;        /* adaptive draft length (seq_params_t.draft_min_p) */
    int spec_step_rows;       /* step row budget (seq_params_t.spec_step_rows) */
    eos_set_t extra_eos;      /* stop tokens besides the tokenizer's EOS (generation_config.json) */
    metrics_t *metrics;       /* may be NULL; not owned */
    sched_health_fn health;   /* may be NULL */
    void *health_user;
    sched_backend_metrics_fn backend_metrics;   /* may be NULL (single process) */
    void *backend_user;
    /* scheduler_run calls this once, on the engine thread, when it sees the stop
     * flag (the server stops accepting connections there). May be NULL. */
    void (*on_shutdown)(void *user);
    void *shutdown_user;
} sched_config_t;

#define SCHED_MAX_TOKENS_FIT (-1)   /* sched_params_t.max_tokens: as many as fit */

/* One request. Everything is copied by scheduler_submit. */
typedef struct sched_params {
    const int32_t *prompt;
    int n_prompt;
    /* SCHED_MAX_TOKENS_FIT (any negative): as many as fit (limit, context, KV
     * capacity); 0: none, only the prompt is run (with prompt_logprobs: its
     * logprobs, the API's echo + max_tokens 0 that scores a prompt; without:
     * no forward at all); > 0: at most that many */
    int max_tokens;
    sampling_params_t sampling;
    int spec_k;                 /* < 0: the server's; above the server's: lowered to it */
    const char *const *stop;    /* stop strings (non-empty) */
    int n_stop;
    logit_adjust_t adjust;      /* logit_bias (copied), presence / frequency penalties */
    bool logprobs;              /* record each token's logprobs (sched_result_t.logprobs) */
    int top_logprobs;           /* with logprobs: alternatives per token, 0..SPEX_MAX_TOP_LOGPROBS */
    bool prompt_logprobs;       /* with logprobs: the prompt's too (seq_params_t.prompt_logprobs) */
} sched_params_t;

/* One generated token and where its text ends in the completion's text
 * (bytes; a token whose text was cut by a stop string ends at the cut). */
typedef struct sched_token {
    int32_t id;
    size_t text_end;
} sched_token_t;

#define SCHED_MAX_STOP 16
#define SCHED_MAX_STOP_LEN 256

typedef enum sched_status {
    SCHED_OK = 0,
    SCHED_INVALID,       /* bad parameters: err says why, *param which one (HTTP 400) */
    SCHED_QUEUE_FULL,    /* HTTP 429 */
    SCHED_UNAVAILABLE,   /* shutting down or not ready (HTTP 503) */
    SCHED_NOMEM          /* HTTP 500 */
} sched_status_t;

/* A finished request; valid until sched_req_release. */
typedef struct sched_result {
    const char *finish_reason;   /* "stop" (EOS or stop string), "length", "cancelled", "error" */
    bool shutdown;               /* cancelled because the server is shutting down */
    const char *error;           /* finish_reason "error": why (names the failing rank if a worker died) */
    const char *text;            /* NUL-terminated; may hold invalid UTF-8 the model generated */
    size_t text_len;
    const int32_t *tokens;       /* every generated token, EOS included */
    int n_tokens;
    const sched_token_t *token_info;   /* [n_token_info]: tokens with their text ends */
    const token_logprob_t *logprobs;   /* [n_token_info] when the request asked for them, else NULL */
    const token_logprob_t *prompt_logprobs;   /* [prompt_tokens] with prompt_logprobs ([0] unset), else NULL */
    int n_token_info;            /* == n_tokens unless memory ran out */
    int prompt_tokens, max_tokens, spec_k;
    double queue_seconds;        /* arrival -> admission */
    double ttft_seconds;         /* arrival -> first token */
    double prefill_seconds, decode_seconds;
    double total_seconds;        /* arrival -> finish */
    spec_stats_t spec;
} sched_result_t;

/* What a waiter gets: released text beyond its offset, progress, the end. */
typedef struct sched_update {
    char *text;                  /* malloc'ed copy of the new text (NULL when len == 0) */
    size_t len;
    /* sched_req_wait_tokens: tokens from tok_from whose text is released (all
     * of them once done), malloc'ed copies; lps NULL unless logprobs */
    sched_token_t *toks;
    token_logprob_t *lps;
    int n_toks;
    int completion_tokens;       /* generated so far */
    /* p.prompt_logprobs: the prompt's logprobs once the prefill computed them
     * ([n_prompt], [0] empty), else NULL; borrowed, valid until the request is released */
    const token_logprob_t *prompt_lps;
    bool done;                   /* finished: sched_req_result() is valid, all text delivered */
} sched_update_t;

/* m and tok must outlive the scheduler; tok may be NULL (no text output). */
scheduler_t *scheduler_create(model_t *m, const tokenizer_t *tok, const sched_config_t *cfg, spex_err_t *err);
void scheduler_free(scheduler_t *s);

/* Limits after defaults were applied. */
const sched_config_t *scheduler_config(const scheduler_t *s);
int scheduler_context(const scheduler_t *s);

/* Any thread. On SCHED_OK *out is the new request (release it). Otherwise err
 * holds the message and *param (if not NULL) the offending field or NULL. */
sched_status_t scheduler_submit(scheduler_t *s, const sched_params_t *p, sched_req_t **out, const char **param,
                                spex_err_t *err);

/* Any thread: wait up to timeout_s for text beyond byte `from`, or the end. */
int sched_req_wait(sched_req_t *r, size_t from, double timeout_s, sched_update_t *u);
/* Same, also copying the tokens from index tok_from that are ready (see
 * sched_update_t); wakes for new tokens too. Free with sched_update_free. */
int sched_req_wait_tokens(sched_req_t *r, size_t from, int tok_from, double timeout_s, sched_update_t *u);
void sched_update_free(sched_update_t *u);
bool sched_req_done(sched_req_t *r);
/* After done. */
const sched_result_t *sched_req_result(const sched_req_t *r);
/* Any thread; idempotent. A queued request leaves the queue at once, a running
 * one before the next step (or within the current one, at its next token). */
void sched_req_cancel(sched_req_t *r);
void sched_req_release(sched_req_t *r);

/* Engine thread: one admit / engine_step / retire round. Returns 0, or -1 if
 * the engine failed (every running request then finished with
 * finish_reason "error" and err's message). */
int scheduler_step(scheduler_t *s, spex_err_t *err);
/* Queued + running requests. */
int scheduler_pending(scheduler_t *s);

/* Engine thread: serve until *stop becomes nonzero, then shut down as
 * described above within grace_seconds. Engine failures are logged and
 * reported to the affected requests; the loop goes on. */
int scheduler_run(scheduler_t *s, const volatile sig_atomic_t *stop, double grace_seconds);

/* Stop accepting: later submissions get SCHED_UNAVAILABLE; queued requests
 * finish as cancelled (shutdown). Any thread. */
void scheduler_close(scheduler_t *s);
/* Engine thread: finish every running request as cancelled (shutdown). */
void scheduler_cancel_running(scheduler_t *s);

/* Readiness: the flag (set by whoever knows that workers answered their
 * handshake; true after scheduler_create) and the health probe's last answer. */
void scheduler_set_ready(scheduler_t *s, bool ready, const char *why);
bool scheduler_ready(scheduler_t *s, char *why, size_t why_len);

#endif
