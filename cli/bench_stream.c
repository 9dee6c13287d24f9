/* bench_stream.c - see bench_stream.h. */
#include "cli/bench_stream.h"

#include <string.h>

#include <cjson/cJSON.h>

#include "core/clock.h"

/* choices[0].text or choices[0].delta.content, appended to q->text. */
static void keep_text(bench_stream_t *q, const cJSON *c) {
    const cJSON *ch = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(c, "choices"), 0);
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(ch, "text");
    if (!s) s = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(ch, "delta"), "content");
    if (cJSON_IsString(s)) sb_str(q->text, s->valuestring);
}

/* The tokens a chunk's usage counts, timestamped at now. */
static void count_tokens(bench_stream_t *q, const cJSON *c, double now) {
    const cJSON *usage = cJSON_GetObjectItemCaseSensitive(c, "usage");
    const cJSON *ct = cJSON_GetObjectItemCaseSensitive(usage, "completion_tokens");
    int total = cJSON_IsNumber(ct) ? ct->valueint : q->tokens, n = total - q->tokens;
    if (n <= 0) return;
    if (!q->first_seen) {   /* the first token; any others in this chunk arrived with it */
        q->first_seen = true;
        q->ttft = now - q->t0;
        n--;
    }
    if (n > 0) samples_add(&q->itl, (now - q->t_prev) / n, n);
    q->tokens = total;
    q->t_prev = now;
}

static int on_chunk(void *user, const char *data, size_t len) {
    bench_stream_t *q = user;
    if (len == 6 && !memcmp(data, "[DONE]", 6)) return 1;
    double now = spex_now();
    cJSON *c = cJSON_ParseWithLength(data, len);
    if (cJSON_GetObjectItemCaseSensitive(c, "error")) q->failed = true;
    count_tokens(q, c, now);
    if (q->text) keep_text(q, c);
    cJSON_Delete(c);
    return 0;
}

int bench_stream_post(const http_target_t *t, const char *path, const strbuf_t *body, bench_stream_t *q,
                      spex_err_t *err) {
    *q = (bench_stream_t){.text = q->text, .t0 = spex_now()};
    q->t_prev = q->t0;
    if (body->oom) return spex_fail(err, "out of memory");
    if (http_post_sse(t, path, body->p, body->n, on_chunk, q, NULL, err)) return -1;
    if (q->failed) return spex_fail(err, "error event");
    if (!q->first_seen) return spex_fail(err, "no tokens");
    if (q->text && q->text->oom) return spex_fail(err, "out of memory");
    return 0;
}
