/* bench_turns.h - the multi-turn chat workload of `spex bench serve --turns T`:
 * one conversation of T streamed POST /v1/chat/completions. Turn 1 sends a
 * system message and the first user message; every next turn sends the whole
 * conversation again with the assistant's answer (the streamed delta
 * contents) and a short follow-up question appended, which is what a chat
 * client does and what the server's prefix cache is for. */
#ifndef SPEX_CLI_BENCH_TURNS_H
#define SPEX_CLI_BENCH_TURNS_H

#include "cli/bench_http.h"
#include "cli/bench_stats.h"

typedef struct turns_cfg {
    const http_target_t *t;
    int turns;
    long max_tokens, spec_k;
    double temperature;
} turns_cfg_t;

typedef struct turns_result {
    double ttft_first, ttft_last;   /* seconds, turn 1 and turn T */
    long tokens;                    /* generated over all turns */
    samples_t itl;                  /* inter-token latencies of all turns; the caller frees it */
} turns_result_t;

/* Conversation number i (seeds, and which follow-ups) opening with the user
 * message `user`. 0, or -1 with err naming the turn that failed. */
int bench_conversation(const turns_cfg_t *c, long i, const char *user, turns_result_t *r, spex_err_t *err);

#endif
