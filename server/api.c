/* api.c - see api.h. Parsing is one small function per field group; each
 * returns -1 with the error filled, so api_parse_request reads as a list. */
#include "api.h"

#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "server/api_fields.h"
#include "server/api_prompt.h"
#include "server/json_str.h"

#define BAD_REQUEST API_BAD_REQUEST

int api_fail(api_error_t *e, int status, const char *type, const char *param, const char *code, const char *fmt,
             ...) {
    e->status = status;
    e->type = type;
    e->param = param;
    e->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return -1;
}

/* ---------------------------------------------------------------- field readers */

const cJSON *api_field(const cJSON *root, const char *name) {
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(root, name);
    return f && !cJSON_IsNull(f) ? f : NULL;
}

static int get_bool(const cJSON *root, const char *name, bool *out, api_error_t *e) {
    const cJSON *f = api_field(root, name);
    if (!f) return 0;
    if (!cJSON_IsBool(f)) return BAD_REQUEST(e, name, "'%s' must be a boolean", name);
    *out = cJSON_IsTrue(f);
    return 0;
}

static int get_number(const cJSON *root, const char *name, double lo, double hi, bool lo_open, double *out,
                      bool *present, api_error_t *e) {
    const cJSON *f = api_field(root, name);
    if (present) *present = f != NULL;
    if (!f) return 0;
    if (!cJSON_IsNumber(f)) return BAD_REQUEST(e, name, "'%s' must be a number", name);
    double v = f->valuedouble;
    if (!(lo_open ? v > lo : v >= lo) || !(v <= hi))
        return BAD_REQUEST(e, name, "'%s' must be in %c%g, %g], got %g", name, lo_open ? '(' : '[', lo, hi, v);
    *out = v;
    return 0;
}

static int get_int(const cJSON *root, const char *name, double lo, double hi, long long *out, bool *present,
                   api_error_t *e) {
    const cJSON *f = api_field(root, name);
    if (present) *present = f != NULL;
    if (!f) return 0;
    double v = cJSON_IsNumber(f) ? f->valuedouble : NAN;
    if (!cJSON_IsNumber(f) || v != floor(v)) return BAD_REQUEST(e, name, "'%s' must be an integer", name);
    if (v < lo || v > hi) return BAD_REQUEST(e, name, "'%s' must be in [%.0f, %.0f], got %.0f", name, lo, hi, v);
    *out = (long long)v;
    return 0;
}

/* ---------------------------------------------------------------- parameters */

static int parse_stop(const cJSON *root, api_request_t *r, api_error_t *e) {
    const cJSON *st = api_field(root, "stop");
    if (!st) return 0;
    if (cJSON_IsString(st)) {
        if (!st->valuestring[0]) return BAD_REQUEST(e, "stop", "stop strings must not be empty");
        if (json_str_len(st) != strlen(st->valuestring))
            return BAD_REQUEST(e, "stop", "stop strings must not hold a NUL character");
        if (!(r->stop[r->n_stop++] = strdup(st->valuestring))) return api_fail(e, 500, "server_error", NULL, NULL, "oom");
        return 0;
    }
    if (!cJSON_IsArray(st)) return BAD_REQUEST(e, "stop", "'stop' must be a string or an array of strings");
    if (cJSON_GetArraySize(st) > SCHED_MAX_STOP)
        return BAD_REQUEST(e, "stop", "at most %d stop strings are allowed", SCHED_MAX_STOP);
    const cJSON *it;
    cJSON_ArrayForEach(it, st) {
        if (!cJSON_IsString(it) || !it->valuestring[0])
            return BAD_REQUEST(e, "stop", "'stop' must hold non-empty strings");
        if (json_str_len(it) != strlen(it->valuestring))
            return BAD_REQUEST(e, "stop", "stop strings must not hold a NUL character");
        if (strlen(it->valuestring) > SCHED_MAX_STOP_LEN)
            return BAD_REQUEST(e, "stop", "stop strings are limited to %d bytes", SCHED_MAX_STOP_LEN);
        if (!(r->stop[r->n_stop++] = strdup(it->valuestring))) return api_fail(e, 500, "server_error", NULL, NULL, "oom");
    }
    return 0;
}

static uint64_t random_seed(void) {
    uint64_t s = 0;
    if (getrandom(&s, sizeof s, 0) != (ssize_t)sizeof s) {   /* fall back to the clock */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        s = (uint64_t)ts.tv_sec * 1000000007ull ^ (uint64_t)ts.tv_nsec;
    }
    return s;
}

static int parse_sampling(const cJSON *root, const api_defaults_t *d, api_request_t *r, api_error_t *e) {
    sampling_params_t *sp = &r->params.sampling;
    double temp = d->temperature, top_p = d->top_p > 0 ? d->top_p : 1;
    long long top_k = d->top_k, seed = 0;
    bool have_seed = false;
    if (get_number(root, "temperature", 0, 2, false, &temp, NULL, e) ||
        get_number(root, "top_p", 0, 1, true, &top_p, NULL, e) ||
        get_int(root, "top_k", -1, 1e9, &top_k, NULL, e) ||
        get_int(root, "seed", -9.2e18, 9.2e18, &seed, &have_seed, e))
        return -1;
    sp->temperature = (float)temp;
    /* top_p is in (0, 1] as a double; a tiny one such as 1e-300 is 0 as a float:
     * keep it positive (only the most likely token) rather than refuse it */
    sp->top_p = fmaxf((float)top_p, FLT_MIN);
    sp->top_k = top_k < 0 ? 0 : (int)top_k;
    sp->seed = have_seed ? (uint64_t)seed : d->have_seed ? d->seed : random_seed();
    return 0;
}

static int parse_limits(const cJSON *root, const api_defaults_t *d, api_request_t *r, api_error_t *e) {
    long long max_tokens = 0, mct = 0, n = 1, spec_k = -1;
    bool have_max = false, have_mct = false;
    if (get_int(root, "max_tokens", 0, 1e9, &max_tokens, &have_max, e) ||
        get_int(root, "max_completion_tokens", 0, 1e9, &mct, &have_mct, e) ||
        get_int(root, "n", 1, API_MAX_CHOICES, &n, NULL, e) ||
        get_int(root, "spec_k", 0, SPEX_MAX_SPEC_K, &spec_k, NULL, e))
        return -1;
    if (have_max && have_mct && max_tokens != mct)
        return BAD_REQUEST(e, "max_completion_tokens", "max_tokens (%lld) and max_completion_tokens (%lld) disagree; "
                           "send one of them", max_tokens, mct);
    if (have_mct) max_tokens = mct;
    r->n = (int)n;
    if (!have_max && !have_mct)
        max_tokens = d->max_tokens > 0 ? d->max_tokens : r->kind == API_COMPLETION ? 16 : SCHED_MAX_TOKENS_FIT;
    r->params.max_tokens = (int)max_tokens;
    r->params.spec_k = (int)spec_k;
    return 0;
}

/* presence_penalty, frequency_penalty, logit_bias {"token id": bias}. */
static int parse_adjust(const api_ctx_t *ctx, const cJSON *root, api_request_t *r, api_error_t *e) {
    logit_adjust_t *a = &r->params.adjust;
    double pres = 0, freq = 0;
    if (get_number(root, "presence_penalty", -2, 2, false, &pres, NULL, e) ||
        get_number(root, "frequency_penalty", -2, 2, false, &freq, NULL, e))
        return -1;
    a->presence = (float)pres;
    a->frequency = (float)freq;
    const cJSON *lb = api_field(root, "logit_bias");
    if (!lb) return 0;
    if (!cJSON_IsObject(lb)) return BAD_REQUEST(e, "logit_bias", "'logit_bias' must be an object {\"token id\": bias}");
    int n = cJSON_GetArraySize(lb);
    if (n > LOGIT_BIAS_MAX) return BAD_REQUEST(e, "logit_bias", "at most %d logit_bias entries", LOGIT_BIAS_MAX);
    if (n && !(r->bias = calloc((size_t)n, sizeof *r->bias)))
        return api_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    const cJSON *it;
    cJSON_ArrayForEach(it, lb) {
        char *end = NULL;
        long id = strtol(it->string, &end, 10);
        if (!it->string[0] || *end || id < 0 || id >= ctx->vocab_size)
            return BAD_REQUEST(e, "logit_bias", "logit_bias key '%.40s' is not a token id in [0, %d)", it->string,
                               ctx->vocab_size);
        if (!cJSON_IsNumber(it) || !(it->valuedouble >= -100 && it->valuedouble <= 100))
            return BAD_REQUEST(e, "logit_bias", "logit_bias['%s'] must be a number in [-100, 100]", it->string);
        r->bias[a->n_bias++] = (logit_bias_entry_t){(int32_t)id, (float)it->valuedouble};
    }
    a->bias = r->bias;
    return 0;
}

/* completions: logprobs 0..5 (alternatives); chat: logprobs true + top_logprobs 0..20. */
static int parse_logprobs(const cJSON *root, api_request_t *r, api_error_t *e) {
    sched_params_t *p = &r->params;
    long long top = 0;
    bool have = false;
    if (r->kind == API_COMPLETION) {
        if (get_int(root, "logprobs", 0, 5, &top, &have, e)) return -1;
        p->logprobs = have;
    } else {
        bool have_top = false;
        if (get_bool(root, "logprobs", &p->logprobs, e) ||
            get_int(root, "top_logprobs", 0, SPEX_MAX_TOP_LOGPROBS, &top, &have_top, e))
            return -1;
        if (have_top && !p->logprobs)
            return BAD_REQUEST(e, "top_logprobs", "'top_logprobs' needs 'logprobs': true");
    }
    p->top_logprobs = (int)top;
    if (get_bool(root, "echo", &r->echo, e)) return -1;
    p->prompt_logprobs = r->echo && p->logprobs;   /* OpenAI: the prompt's tokens get logprobs too */
    return 0;
}

/* max_tokens 0 asks for no new token. With echo that is how a client scores a
 * prompt (OpenAI's legacy completions; lm-eval-harness sends echo, logprobs
 * and max_tokens 0): the answer is the prompt and, with logprobs, its tokens'
 * logprobs. Without echo there is nothing to answer with: refused, naming the
 * field the client sent. */
static int check_no_tokens(const cJSON *root, const api_request_t *r, api_error_t *e) {
    if (r->params.max_tokens != 0 || r->echo) return 0;
    const char *f = api_field(root, "max_tokens") ? "max_tokens" : "max_completion_tokens";
    return BAD_REQUEST(e, f, "'%s' is 0: no token would be generated and there is nothing to return; 0 is accepted "
                       "only with 'echo': true (completions), to score the prompt", f);
}

static int parse_flags(const cJSON *root, api_request_t *r, api_error_t *e) {
    if (get_bool(root, "stream", &r->stream, e) || get_bool(root, "return_tokens", &r->return_tokens, e)) return -1;
    const cJSON *so = api_field(root, "stream_options");
    if (!so) return 0;
    if (!cJSON_IsObject(so)) return BAD_REQUEST(e, "stream_options", "'stream_options' must be an object");
    return get_bool(so, "include_usage", &r->include_usage, e) ||
                   get_bool(so, "continuous_usage_stats", &r->continuous_usage, e)
               ? -1
               : 0;
}

static int check_model(const api_ctx_t *ctx, const cJSON *root, api_error_t *e) {
    const cJSON *m = api_field(root, "model");
    if (!m || !ctx->model_name) return 0;
    if (!cJSON_IsString(m)) return BAD_REQUEST(e, "model", "'model' must be a string");
    if (!json_str_is(m, ctx->model_name))
        return api_fail(e, 404, "invalid_request_error", "model", "model_not_found",
                        "the model '%.200s' does not exist; this server serves '%s'", m->valuestring, ctx->model_name);
    return 0;
}

int api_parse_request(const api_ctx_t *ctx, api_kind_t kind, const cJSON *root, const api_defaults_t *d,
                      api_request_t *r, api_error_t *e) {
    memset(r, 0, sizeof *r);
    r->kind = kind;
    if (!cJSON_IsObject(root)) return BAD_REQUEST(e, NULL, "the request body must be a JSON object");
    if (check_model(ctx, root, e) || api_check_fields(kind, root, e) || parse_flags(root, r, e) ||
        parse_limits(root, d, r, e) || parse_sampling(root, d, r, e) || parse_stop(root, r, e) ||
        parse_adjust(ctx, root, r, e) || parse_logprobs(root, r, e) || check_no_tokens(root, r, e) ||
        (kind == API_CHAT ? api_parse_messages(ctx, root, r, e) : api_parse_prompt(ctx, root, r, e))) {
        api_request_free(r);
        return -1;
    }
    r->prompt = r->prompts[0].ids;
    r->n_prompt = r->prompts[0].n;
    r->params.prompt = r->prompt;
    r->params.n_prompt = r->n_prompt;
    r->params.stop = (const char *const *)r->stop;
    r->params.n_stop = r->n_stop;
    return 0;
}

void api_request_free(api_request_t *r) {
    for (int i = 0; i < r->n_prompts; i++) {
        free(r->prompts[i].ids);
        free(r->prompts[i].echo);
    }
    free(r->prompts);
    free(r->bias);
    for (int i = 0; i < r->n_stop; i++) free(r->stop[i]);
    memset(r, 0, sizeof *r);
}

int api_n_choices(const api_request_t *r) { return r->n_prompts * r->n; }

void api_choice_params(const api_request_t *r, int c, sched_params_t *out) {
    const api_prompt_t *p = &r->prompts[c / r->n];
    *out = r->params;
    out->prompt = p->ids;
    out->n_prompt = p->n;
    out->sampling.seed += (uint64_t)(c % r->n);   /* n choices of one prompt: seed, seed + 1, ... */
}

int api_prompt_tokens(const api_request_t *r) {
    int n = 0;
    for (int i = 0; i < r->n_prompts; i++) n += r->prompts[i].n;
    return n;
}

/* ---------------------------------------------------------------- errors */

void api_submit_error(sched_status_t st, const char *param, const char *msg, api_error_t *e) {
    switch (st) {
    case SCHED_INVALID: api_fail(e, 400, "invalid_request_error", param, "invalid_value", "%s", msg); break;
    case SCHED_QUEUE_FULL: api_fail(e, 429, "rate_limit_error", NULL, "queue_full", "%s", msg); break;
    case SCHED_UNAVAILABLE: api_fail(e, 503, "server_error", NULL, "unavailable", "%s", msg); break;
    default: api_fail(e, 500, "server_error", NULL, "internal_error", "%s", msg); break;
    }
}

bool api_result_error(const sched_result_t *r, api_error_t *e) {
    if (!strcmp(r->finish_reason, "error")) {
        api_fail(e, 500, "server_error", NULL, "engine_error", "generation failed: %s", r->error);
        return true;
    }
    if (!strcmp(r->finish_reason, "cancelled")) {
        if (r->shutdown)
            api_fail(e, 503, "server_error", NULL, "shutting_down",
                     "the server is shutting down; the request was cancelled after %d tokens", r->n_tokens);
        else
            api_fail(e, 500, "server_error", NULL, "cancelled", "the request was cancelled");
        return true;
    }
    return false;
}

void api_error_json(strbuf_t *b, const api_error_t *e) {
    sb_str(b, "{\"error\":{\"message\":");
    sb_json_cstr(b, e->message);
    sb_str(b, ",\"type\":");
    sb_json_cstr(b, e->type);
    sb_str(b, ",\"param\":");
    sb_json_cstr(b, e->param);
    sb_str(b, ",\"code\":");
    sb_json_cstr(b, e->code);
    sb_str(b, "}}");
}

/* ---------------------------------------------------------------- responses */

void api_new_id(api_kind_t kind, char *out, size_t len) {
    unsigned char r[12];
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) {
        uint64_t s = random_seed();
        for (size_t i = 0; i < sizeof r; i++) r[i] = (unsigned char)(s >> (8 * (i % 8))) ^ (unsigned char)i;
    }
    int k = snprintf(out, len, "%s", kind == API_CHAT ? "chatcmpl-" : "cmpl-");
    for (size_t i = 0; i < sizeof r && k + 2 < (int)len; i++) k += snprintf(out + k, len - (size_t)k, "%02x", r[i]);
}

int api_parse_body(const api_ctx_t *ctx, api_kind_t kind, const char *body, size_t len, api_request_t *out,
                   api_error_t *e) {
    /* json_parse_doc reports where parsing stopped through its own out
     * parameters; cJSON_GetErrorPtr() is process-global, so racy across handlers */
    const char *why = NULL;
    size_t at = 0;
    cJSON *root = json_parse_doc(body ? body : "", len, &why, &at);
    if (!root)
        return api_fail(e, 400, "invalid_request_error", NULL, "invalid_json", "the body is %s (error near byte %zu)",
                        why, at);
    api_defaults_t d = ctx->defaults ? *ctx->defaults : (api_defaults_t){.temperature = 1.0f};
    int bad = api_parse_request(ctx, kind, root, &d, out, e);
    cJSON_Delete(root);
    return bad;
}
