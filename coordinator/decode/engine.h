/* engine.h - the decode loop over a set of sequences, with MTP speculative decoding.
 *
 * One engine_step() advances every active sequence:
 *   1. prefill: a new sequence runs its prompt (its own forward call), samples
 *      its first token, and (with speculation) runs the MTP module over the
 *      prompt to fill the MTP cache and draft d1;
 *   2. verify: one forward of the main model over [last, d1..dK] rows of every
 *      decoding sequence at once (each all-to-all carries K+1 rows per
 *      sequence); accept drafts (greedy match, or speculative sampling: accept
 *      d with prob min(1, p(d)/q(d)), else draw from norm(max(0, p - q))),
 *      emit the accepted drafts plus one target token, roll back both caches;
 *   3. draft: the MTP module catches up on the accepted tokens (rows
 *      (h_t, token_{t+1}) for the new positions; its last row drafts d1), then
 *      chains K-1 more single-row steps (hidden after shared_head.norm + the
 *      token just drafted).
 * Every row a token or a draft comes from is first adjusted by the request's
 * logit_bias and penalties (history: the output so far plus the drafts before
 * that row), and its logprobs are recorded when asked (token_logprobs.h).
 * Decode, verify and draft steps use the row-independent kernels, so a token's
 * logits never depend on K or on the other sequences in the step: greedy output
 * is identical with and without speculation and under any batching.
 *
 * Invariants for a decoding sequence (positions are 0-based):
 *   main cache holds positions [0, pos); `last` is the token at position pos;
 *   MTP cache holds positions [0, pos): row t was computed from (h_t, token_{t+1});
 *   a sequence paused by the step row budget holds only [0, mtp_len), and
 *   hid holds the main hidden states of [mtp_len, pos) to catch up from. */
#ifndef SPEX_ENGINE_H
#define SPEX_ENGINE_H

#include <stdbool.h>
#include <stdint.h>

#include "coordinator/decode/eos_set.h"
#include "coordinator/decode/logit_adjust.h"
#include "coordinator/decode/sampler.h"
#include "coordinator/decode/token_logprobs.h"
#include "coordinator/model/model.h"

#define SPEX_MAX_SPEC_K 8
/* generate's and serve's K when the model has an MTP module and none is given (lossless for greedy
 * output whatever K). Measured on the shipped model, 2026-12-05, after e4m3 widening got cheaper: in one
 * process `spex bench spec` put K = 1 first in four runs (1.12-1.22x of K = 0, K = 3 1.05-1.13x): a
 * 1-row step got faster while every verify row still costs its FMAs. With expert ranks the per-layer
 * round trip is shared by the verify rows: under mpirun -np 3 K = 2-4 gave 1.37-1.44x, K = 1 1.26x. */
#define SPEX_DEFAULT_SPEC_K_LOCAL 1
#define SPEX_DEFAULT_SPEC_K_EP 3
static inline int spex_default_spec_k(int n_mtp, bool local_experts) {
    return n_mtp <= 0 ? 0 : local_experts ? SPEX_DEFAULT_SPEC_K_LOCAL : SPEX_DEFAULT_SPEC_K_EP;
}
/* Default step row budget: the kernels read each weight once for up to 8 rows (core/matmul.h) */
#define SPEX_SPEC_STEP_ROWS 8

typedef struct seq_params {
    int max_new_tokens;      /* >= 0; 0: the sequence ends after its prefill (which only
                              * prompt_logprobs needs: without them nothing is run) */
    sampling_params_t sampling;
    int spec_k;              /* 0 = no speculation; 1..SPEX_MAX_SPEC_K */
    bool sampled_drafts;     /* temperature > 0: draft from q (true) or argmax of q (false) */
    /* Adaptive draft length: after a draft whose probability under the MTP
     * distribution is below this, draft no further this step (spec_k is then a
     * maximum). 0 = always spec_k. Any value keeps the output distribution:
     * the decision uses only draft-side information. */
    float draft_min_p;
    /* Step row budget (greedy sequences): in a step where n >= 2 sequences
     * run, draft at most spec_step_rows / n - 1 tokens (0 = no budget; a lone
     * sequence drafts spec_k). Greedy tokens are the same for every K, so the
     * budget never changes them; a sampled sequence's tokens depend on its K
     * (not their distribution, their draw from the seed), so it keeps spec_k
     * and its output does not depend on what else runs. A verify row costs its
     * FMAs whoever else is in the step, so once a batch fills the kernels'
     * 8-row panels, drafts only add work; a sequence capped to 0 drafts
     * pauses: it skips the MTP catch-up, keeps its main hidden states, and
     * computes the missing MTP rows when the budget lets it draft again
     * (the same rows from the same inputs: exact). */
    int spec_step_rows;
    eos_set_t eos;           /* stop tokens (empty = none): any of them ends the sequence */
    /* logit_bias and penalties, applied to every row a token or a draft comes
     * from (the bias array is copied by sequence_create) */
    logit_adjust_t adjust;
    bool logprobs;           /* record token_logprob_t for every emitted token */
    int top_logprobs;        /* alternatives per token (0..SPEX_MAX_TOP_LOGPROBS) */
    /* Also the prompt's tokens (the API's echo with logprobs): prompt_lp. They
     * were not sampled, so theirs is the model's own distribution,
     * log_softmax(logits) (temperature 1, no logit_bias, penalties, top-k or
     * top-p). Needs every prompt row's logits: the prefix cache is not used. */
    bool prompt_logprobs;
} seq_params_t;

typedef struct spec_stats {
    long steps;                               /* decode (verify) forwards */
    long emitted;                             /* tokens emitted by those steps */
    long drafted, accepted;                   /* over all positions */
    long proposed;                            /* drafts verified (evaluated or not): k per step */
    long drafted_at[SPEX_MAX_SPEC_K];         /* drafts evaluated at position j+1 */
    long accepted_at[SPEX_MAX_SPEC_K];        /* of which accepted */
    double verify_seconds;                    /* main-model forwards of decode/verify steps */
    double draft_seconds;                     /* MTP catch-up and chained drafting */
} spec_stats_t;

typedef struct sequence {
    seq_params_t p;
    kv_cache_t *kv;
    rng_t rng;
    int32_t *prompt;
    int n_prompt;
    int32_t *out;            /* generated tokens [n_out] */
    int n_out;
    token_logprob_t *lp;     /* p.logprobs: [n_out], lp[i] for out[i]; set before on_token sees out[i] */
    float *lp_scratch;       /* p.logprobs: [vocab] */
    token_logprob_t *prompt_lp;   /* p.prompt_logprobs: [n_prompt], entry t for prompt[t] after prompt[0..t); [0] unset */
    logit_bias_entry_t *bias;   /* owned copy of p.adjust.bias */
    int32_t *counts;         /* penalties: [vocab] zeroed scratch (logit_adjust_apply) */
    int pos;                 /* tokens in the main cache */
    int32_t last;            /* last emitted token (at position pos) */
    int32_t drafts[SPEX_MAX_SPEC_K];
    int n_drafts;
    bool draft_stop;         /* the last draft fell below draft_min_p: no more drafts this step */
    int draft_cap;           /* most drafts this step (p.spec_step_rows over the step's sequences) */
    float *q;                /* [spec_k, vocab]: draft distributions (sampled drafts) */
    float *mtp_hidden;       /* [hidden]: MTP hidden of the last draft step */
    bool started, done;
    int mtp_canon;           /* MTP rows [0, mtp_canon) of EVERY module are canonical (from main
                              * hidden states); stays 0 when spec_k < the model's modules, which
                              * runs only modules 0..spec_k-1 */
    float *hid;              /* [capacity, hidden]: the main hidden states of positions
                              * [hid_from, hid_len) (those it computed). Kept for the prefix cache
                              * when spec_k does not cover every module (a later speculative
                              * request computes the MTP rows from them), and from a sequence's
                              * first pause (spec_step_rows) on, to catch up from */
    int hid_from, hid_len;
    bool cache_saved;        /* done and remembered by the prefix cache */
    const char *finish_reason;   /* "stop", "length", "cancelled" */
    spec_stats_t stats;
    double prefill_seconds, decode_seconds;
} sequence_t;

/* Validates parameters against the model (spec_k needs MTP, context length...). */
sequence_t *sequence_create(const model_t *m, const int32_t *prompt, int n_prompt, const seq_params_t *p,
                            spex_err_t *err);
void sequence_free(sequence_t *s);

/* Called for each emitted token; return nonzero to cancel that sequence. */
typedef int (*engine_token_fn)(void *user, sequence_t *s, int32_t token);

/* Advance every sequence that is not done by one step. */
int engine_step(model_t *m, sequence_t **seqs, int n_seqs, engine_token_fn on_token, void *user, spex_err_t *err);

/* Add b's counters to a. */
void spec_stats_add(spec_stats_t *a, const spec_stats_t *b);

#endif
