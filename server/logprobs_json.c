/* logprobs_json.c - see logprobs_json.h. */
#include "logprobs_json.h"

#include <math.h>
#include <stdbool.h>

/* The token's bytes (empty without a tokenizer or for an unknown id). */
static const char *token_text(const tokenizer_t *tok, int32_t id, size_t *len) {
    const char *s = tok ? tokenizer_token_bytes(tok, id, len) : NULL;
    if (!s) *len = 0;
    return s ? s : "";
}

/* Is s[0..n) whole, valid UTF-8 (no character cut at either end)? */
static bool valid_utf8(const unsigned char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        size_t k = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (k == 0 || i + k > n) return false;
        for (size_t j = 1; j < k; j++)
            if ((s[i + j] & 0xC0) != 0x80) return false;
        i += k;
    }
    return true;
}

/* A token's text as a JSON string: its bytes, or, when they are not valid
 * UTF-8 on their own (part of a character), "bytes:\xNN..." as OpenAI spells it. */
static void token_string(strbuf_t *b, const char *t, size_t len) {
    if (valid_utf8((const unsigned char *)t, len)) { sb_json_str(b, t, len); return; }
    sb_str(b, "\"bytes:");
    for (size_t i = 0; i < len; i++) sb_printf(b, "\\\\x%02x", (unsigned)(unsigned char)t[i]);
    sb_str(b, "\"");
}

static void number(strbuf_t *b, float v) {
    sb_printf(b, "%.9g", isfinite(v) ? (double)v : (double)LOGPROB_FLOOR);
}

void logprobs_json_completion(strbuf_t *b, const tokenizer_t *tok, const sched_token_t *toks,
                              const token_logprob_t *lps, int n, const logprobs_offsets_t *off) {
    size_t len;
    sb_str(b, "{\"tokens\":[");
    for (int i = 0; i < n; i++) {
        const char *t = token_text(tok, toks[i].id, &len);
        if (i) sb_str(b, ",");
        token_string(b, t, len);
    }
    sb_str(b, "],\"token_logprobs\":[");
    for (int i = 0; i < n; i++) {
        if (i) sb_str(b, ",");
        if (i == 0 && off->first_null) sb_str(b, "null");
        else number(b, lps[i].logprob);
    }
    sb_str(b, "],\"top_logprobs\":[");
    for (int i = 0; i < n; i++) {
        if (i == 0 && off->first_null) { sb_str(b, "null"); continue; }
        sb_str(b, i ? ",{" : "{");
        for (int k = 0; k < lps[i].n_top; k++) {
            const char *t = token_text(tok, lps[i].top_id[k], &len);
            if (k) sb_str(b, ",");
            token_string(b, t, len);
            sb_str(b, ":");
            number(b, lps[i].top_logprob[k]);
        }
        sb_str(b, "}");
    }
    sb_str(b, "],\"text_offset\":[");
    size_t prev = off->prev_end;
    for (int i = 0; i < n; i++) {
        sb_printf(b, "%s%zu", i ? "," : "", off->base + (prev < off->limit ? prev : off->limit));
        prev = toks[i].text_end;
    }
    sb_str(b, "]}");
}

/* "token":..,"logprob":..,"bytes":[..] */
static void chat_entry(strbuf_t *b, const tokenizer_t *tok, int32_t id, float lp) {
    size_t len;
    const char *t = token_text(tok, id, &len);
    sb_str(b, "\"token\":");
    token_string(b, t, len);
    sb_str(b, ",\"logprob\":");
    number(b, lp);
    sb_str(b, ",\"bytes\":[");
    for (size_t j = 0; j < len; j++) sb_printf(b, "%s%u", j ? "," : "", (unsigned)(unsigned char)t[j]);
    sb_str(b, "]");
}

void logprobs_json_chat(strbuf_t *b, const tokenizer_t *tok, const sched_token_t *toks, const token_logprob_t *lps,
                        int n) {
    sb_str(b, "{\"content\":[");
    for (int i = 0; i < n; i++) {
        sb_str(b, i ? ",{" : "{");
        chat_entry(b, tok, toks[i].id, lps[i].logprob);
        sb_str(b, ",\"top_logprobs\":[");
        for (int k = 0; k < lps[i].n_top; k++) {
            sb_str(b, k ? ",{" : "{");
            chat_entry(b, tok, lps[i].top_id[k], lps[i].top_logprob[k]);
            sb_str(b, "}");
        }
        sb_str(b, "]}");
    }
    sb_str(b, "],\"refusal\":null}");
}
