/* json_raw.c - see json_raw.h: a scanner over valid JSON that only finds
 * where values begin and end (strings with their escapes, nested containers). */
#include "json_raw.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/strbuf.h"
#include "server/json_str.h"

static size_t skip_ws(const char *t, size_t n, size_t i) {
    while (i < n && (t[i] == ' ' || t[i] == '\t' || t[i] == '\n' || t[i] == '\r')) i++;
    return i;
}

/* i at an opening quote: the index after the closing one. */
static size_t skip_string(const char *t, size_t n, size_t i) {
    for (i++; i < n && t[i] != '"'; i++)
        if (t[i] == '\\') i++;
    return i < n ? i + 1 : n;
}

/* i at the start of a value: the index after it. */
static size_t skip_value(const char *t, size_t n, size_t i) {
    if (i >= n) return n;
    if (t[i] == '"') return skip_string(t, n, i);
    if (t[i] != '{' && t[i] != '[') {   /* number or literal */
        while (i < n && !strchr(",}] \t\r\n", t[i])) i++;
        return i;
    }
    int depth = 0;
    while (i < n) {
        if (t[i] == '"') { i = skip_string(t, n, i); continue; }
        if (t[i] == '{' || t[i] == '[') depth++;
        else if ((t[i] == '}' || t[i] == ']') && --depth == 0) return i + 1;
        i++;
    }
    return n;
}

char *json_raw_member(const char *t, size_t n, const char *key) {
    size_t i = skip_ws(t, n, 0), klen = strlen(key);
    if (i >= n || t[i] != '{') return NULL;
    for (i = skip_ws(t, n, i + 1); i < n && t[i] == '"';) {
        size_t k0 = i + 1, k1 = skip_string(t, n, i) - 1;
        bool match = k1 - k0 == klen && !memcmp(t + k0, key, klen);
        i = skip_ws(t, n, k1 + 1);
        if (i >= n || t[i] != ':') return NULL;
        size_t v0 = skip_ws(t, n, i + 1), v1 = skip_value(t, n, v0);
        if (match) {
            char *out = malloc(v1 - v0 + 1);
            if (out) memcpy(out, t + v0, v1 - v0), out[v1 - v0] = '\0';
            return out;
        }
        i = skip_ws(t, n, v1);
        if (i < n && t[i] == ',') i = skip_ws(t, n, i + 1);
    }
    return NULL;
}

char *json_raw_key(const cJSON *v, const char *line, size_t len, const char *field) {
    if (cJSON_IsNumber(v)) {
        char *raw = json_raw_member(line, len, field);
        return raw ? raw : cJSON_PrintUnformatted(v);
    }
    strbuf_t b = {0};
    json_str_spell(&b, v->valuestring, json_str_len(v));
    return sb_take(&b, NULL);
}
