/* bench_turns.c - see bench_turns.h. */
#include "cli/bench_turns.h"

#include <string.h>

#include "cli/bench_stream.h"
#include "core/strbuf.h"

#define TURNS_SYSTEM "Answer in the manner of Jane Austen."

static const char *const FOLLOW_UPS[] = {
    "What happened next?", "Who else was there?", "Why was that?", "How did she answer?",
    "Tell me more.",       "What did he think?",
};
#define N_FOLLOW_UPS ((long)(sizeof FOLLOW_UPS / sizeof *FOLLOW_UPS))

static void add_message(strbuf_t *msgs, const char *role, const char *content, size_t len) {
    sb_printf(msgs, "%s{\"role\":\"%s\",\"content\":", msgs->n ? "," : "", role);
    sb_json_str(msgs, content, len);
    sb_str(msgs, "}");
}

/* A streaming chat request with the messages so far. */
static void chat_body(const turns_cfg_t *c, const strbuf_t *msgs, long seed, strbuf_t *b) {
    sb_str(b, "{\"messages\":[");
    sb_add(b, msgs->p, msgs->n);
    sb_printf(b, "],\"max_tokens\":%ld,\"temperature\":%g,\"seed\":%ld,\"spec_k\":%ld,\"stream\":true,"
                 "\"stream_options\":{\"continuous_usage_stats\":true}}",
              c->max_tokens, c->temperature, seed, c->spec_k);
}

/* One turn: send, record, and append the answer and the next question. */
static int one_turn(const turns_cfg_t *c, long i, int k, strbuf_t *msgs, turns_result_t *r, spex_err_t *err) {
    strbuf_t body = {0}, answer = {0};
    chat_body(c, msgs, i * c->turns + k, &body);
    bench_stream_t q = {.text = &answer};
    int rc = bench_stream_post(c->t, "/v1/chat/completions", &body, &q, err);
    if (rc == 0) {
        if (k == 0) r->ttft_first = q.ttft;
        if (k == c->turns - 1) r->ttft_last = q.ttft;
        r->tokens += q.tokens;
        rc = samples_merge(&r->itl, &q.itl) ? spex_fail(err, "out of memory") : 0;
        const char *next = FOLLOW_UPS[(i + k) % N_FOLLOW_UPS];
        add_message(msgs, "assistant", answer.p ? answer.p : "", answer.n);
        add_message(msgs, "user", next, strlen(next));
    }
    sb_free(&body);
    sb_free(&answer);
    samples_free(&q.itl);
    return rc;
}

int bench_conversation(const turns_cfg_t *c, long i, const char *user, turns_result_t *r, spex_err_t *err) {
    strbuf_t msgs = {0};
    add_message(&msgs, "system", TURNS_SYSTEM, sizeof TURNS_SYSTEM - 1);
    add_message(&msgs, "user", user, strlen(user));
    int rc = 0;
    for (int k = 0; k < c->turns && rc == 0; k++) {
        rc = one_turn(c, i, k, &msgs, r, err);
        if (rc) spex_err_prefix(err, "turn %d: ", k + 1);
    }
    if (rc == 0 && msgs.oom) rc = spex_fail(err, "out of memory");
    sb_free(&msgs);
    return rc;
}
