/* api_response.c - see api_response.h. */
#include "api_response.h"

#include <stdint.h>
#include <stdlib.h>

#include "server/logprobs_json.h"

static void usage_json(strbuf_t *b, int prompt, int completion) {
    sb_printf(b, "\"usage\":{\"prompt_tokens\":%d,\"completion_tokens\":%d,\"total_tokens\":%d}", prompt, completion,
              prompt + completion);
}

static void head_json(strbuf_t *b, const api_request_t *rq, const char *id, long created, const char *model,
                      bool chunk) {
    const char *object = rq->kind == API_CHAT ? (chunk ? "chat.completion.chunk" : "chat.completion")
                                              : "text_completion";
    sb_str(b, "{\"id\":");
    sb_json_cstr(b, id);
    sb_printf(b, ",\"object\":\"%s\",\"created\":%ld,\"model\":", object, created);
    sb_json_cstr(b, model);
}

/* The echoed prompt of choice c (completions with echo), or NULL. */
static const api_prompt_t *echo_of(const api_request_t *rq, int c) {
    return rq->echo && rq->kind == API_COMPLETION ? &rq->prompts[c / rq->n] : NULL;
}

static void logprobs_member(strbuf_t *b, const api_request_t *rq, const tokenizer_t *tok, const sched_token_t *toks,
                            const token_logprob_t *lps, int n, const logprobs_offsets_t *off) {
    sb_str(b, ",\"logprobs\":");
    if (!rq->params.logprobs || !lps) sb_str(b, "null");
    else if (rq->kind == API_CHAT) logprobs_json_chat(b, tok, toks, lps, n);
    else logprobs_json_completion(b, tok, toks, lps, n, off);
}

/* The prompt's tokens with their logprobs and text ends in the echoed text: toks[p->n], lps[p->n]. */
static void echo_tokens(const tokenizer_t *tok, const api_prompt_t *p, const token_logprob_t *prompt_lps,
                        sched_token_t *toks, token_logprob_t *lps) {
    size_t end = 0;
    for (int i = 0; i < p->n; i++) {
        size_t len = 0;
        if (i >= p->echo_skip && tok && !tokenizer_token_bytes(tok, p->ids[i], &len)) len = 0;
        end = end + len < p->echo_len ? end + len : p->echo_len;
        toks[i] = (sched_token_t){p->ids[i], i == p->n - 1 ? p->echo_len : end};   /* the completion follows it */
        lps[i] = prompt_lps[i];
    }
}

/* Completions with echo and logprobs: the prompt's tokens (the first has no
 * logprob: null), then the completion's, as one list with offsets in the
 * echoed text. */
static void echo_logprobs(strbuf_t *b, const tokenizer_t *tok, const api_prompt_t *p, const sched_result_t *r) {
    int n = p->n + r->n_token_info;
    sched_token_t *toks = malloc(sizeof *toks * (size_t)n);
    token_logprob_t *lps = malloc(sizeof *lps * (size_t)n);
    if (!toks || !lps) {
        b->oom = true;
        free(toks);
        free(lps);
        return;
    }
    echo_tokens(tok, p, r->prompt_logprobs, toks, lps);
    for (int i = 0; i < r->n_token_info; i++) {
        toks[p->n + i] = (sched_token_t){r->token_info[i].id, p->echo_len + r->token_info[i].text_end};
        lps[p->n + i] = r->logprobs[i];
    }
    logprobs_json_completion(b, tok, toks, lps, n, &(logprobs_offsets_t){0, 0, p->echo_len + r->text_len, true});
    free(toks);
    free(lps);
}

static void choice_json(strbuf_t *b, const api_request_t *rq, const tokenizer_t *tok, int c, const sched_result_t *r) {
    const api_prompt_t *echo = echo_of(rq, c);
    sb_printf(b, "%s{\"index\":%d,", c ? "," : "", c);
    if (rq->kind == API_CHAT) {
        sb_str(b, "\"message\":{\"role\":\"assistant\",\"content\":");
        sb_json_str(b, r->text, r->text_len);
        sb_str(b, "}");
    } else if (echo) {
        strbuf_t t = {0};
        sb_add(&t, echo->echo, echo->echo_len);
        sb_add(&t, r->text, r->text_len);
        sb_str(b, "\"text\":");
        sb_json_str(b, t.p ? t.p : "", t.n);
        if (t.oom) b->oom = true;
        sb_free(&t);
    } else {
        sb_str(b, "\"text\":");
        sb_json_str(b, r->text, r->text_len);
    }
    if (rq->return_tokens) {
        sb_str(b, ",\"tokens\":");
        sb_json_ids(b, r->tokens, r->n_tokens);
    }
    logprobs_offsets_t off = {echo ? echo->echo_len : 0, 0, r->text_len, false};
    /* no completion tokens (max_tokens 0: a scored prompt) means no completion logprobs either */
    if (echo && rq->params.prompt_logprobs && r->prompt_logprobs && (r->logprobs || r->n_token_info == 0)) {
        sb_str(b, ",\"logprobs\":");
        echo_logprobs(b, tok, echo, r);
    } else {
        logprobs_member(b, rq, tok, r->token_info, r->logprobs, r->n_token_info, &off);
    }
    sb_str(b, ",\"finish_reason\":");
    sb_json_cstr(b, r->finish_reason);
    sb_str(b, "}");
}

void api_response_json(strbuf_t *b, const api_request_t *rq, const tokenizer_t *tok, const char *id, long created,
                       const char *model, const sched_result_t *const *res, int n_res) {
    head_json(b, rq, id, created, model, false);
    sb_str(b, ",\"choices\":[");
    int completion = 0;
    for (int c = 0; c < n_res; c++) {
        choice_json(b, rq, tok, c, res[c]);
        completion += res[c]->n_tokens;
    }
    sb_str(b, "],");
    usage_json(b, api_prompt_tokens(rq), completion);
    sb_str(b, "}");
}

void api_chunk_sse(strbuf_t *b, const api_request_t *rq, const tokenizer_t *tok, const char *id, long created,
                   const char *model, const api_delta_t *d, int usage_tokens) {
    sb_str(b, "data: ");
    head_json(b, rq, id, created, model, true);
    sb_printf(b, ",\"choices\":[{\"index\":%d,", d->index);
    if (rq->kind == API_CHAT) {
        sb_str(b, "\"delta\":{");
        if (d->role) sb_str(b, "\"role\":\"assistant\"");
        if (d->text) {
            sb_str(b, d->role ? ",\"content\":" : "\"content\":");
            sb_json_str(b, d->text, d->len);
        }
        sb_str(b, "}");
    } else {
        sb_str(b, "\"text\":");
        sb_json_str(b, d->text ? d->text : "", d->text ? d->len : 0);
    }
    const api_prompt_t *echo = echo_of(rq, d->index);
    logprobs_offsets_t off = {echo ? echo->echo_len : 0, d->prev_end, SIZE_MAX, false};
    if (d->n_toks > 0) logprobs_member(b, rq, tok, d->toks, d->lps, d->n_toks, &off);
    else sb_str(b, ",\"logprobs\":null");
    sb_str(b, ",\"finish_reason\":");
    sb_json_cstr(b, d->finish_reason);
    sb_str(b, "}]");
    if (usage_tokens >= 0) {
        sb_str(b, ",");
        usage_json(b, api_prompt_tokens(rq), usage_tokens);
    }
    sb_str(b, "}\n\n");
}

void api_echo_chunk_sse(strbuf_t *b, const api_request_t *rq, const tokenizer_t *tok, const char *id, long created,
                        const char *model, int index, const token_logprob_t *prompt_lps, int usage_tokens) {
    const api_prompt_t *p = echo_of(rq, index);
    if (!p) return;
    sb_str(b, "data: ");
    head_json(b, rq, id, created, model, true);
    sb_printf(b, ",\"choices\":[{\"index\":%d,\"text\":", index);
    sb_json_str(b, p->echo, p->echo_len);
    sb_str(b, ",\"logprobs\":");
    sched_token_t *toks = prompt_lps ? malloc(sizeof *toks * (size_t)p->n) : NULL;
    token_logprob_t *lps = prompt_lps ? malloc(sizeof *lps * (size_t)p->n) : NULL;
    if (toks && lps) {
        echo_tokens(tok, p, prompt_lps, toks, lps);
        logprobs_json_completion(b, tok, toks, lps, p->n, &(logprobs_offsets_t){0, 0, p->echo_len, true});
    } else {
        b->oom |= prompt_lps != NULL;
        sb_str(b, "null");
    }
    free(toks);
    free(lps);
    sb_str(b, ",\"finish_reason\":null}]");
    if (usage_tokens >= 0) {
        sb_str(b, ",");
        usage_json(b, api_prompt_tokens(rq), usage_tokens);
    }
    sb_str(b, "}\n\n");
}

void api_usage_chunk_sse(strbuf_t *b, const api_request_t *rq, const char *id, long created, const char *model,
                         int completion_tokens) {
    sb_str(b, "data: ");
    head_json(b, rq, id, created, model, true);
    sb_str(b, ",\"choices\":[],");
    usage_json(b, api_prompt_tokens(rq), completion_tokens);
    sb_str(b, "}\n\n");
}
