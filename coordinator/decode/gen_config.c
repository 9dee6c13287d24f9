/* gen_config.c - see gen_config.h. One small reader per field type; each
 * names the file and the field in its error. */
#include "gen_config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "core/file.h"

#define GEN_CONFIG_FILE "generation_config.json"
#define GEN_CONFIG_MAX_BYTES (1u << 20)

typedef struct gctx {
    const cJSON *root;
    const char *path;
    int vocab;
    spex_err_t *err;
} gctx_t;

static int bad(const gctx_t *c, const char *key, const char *what) {
    return spex_fail(c->err, "%s: field '%s': %s", c->path, key, what);
}

/* The field, or NULL when absent or null. */
static const cJSON *field(const gctx_t *c, const char *key) {
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(c->root, key);
    return f && !cJSON_IsNull(f) ? f : NULL;
}

static int read_number(const gctx_t *c, const char *key, double lo, double hi, bool lo_open, double *out, bool *has) {
    const cJSON *f = field(c, key);
    if (!f) return 0;
    char msg[128];
    if (!cJSON_IsNumber(f)) return bad(c, key, "must be a number");
    double v = f->valuedouble;
    if (!(lo_open ? v > lo : v >= lo) || !(v <= hi)) {
        snprintf(msg, sizeof msg, "must be in %c%g, %g], got %g", lo_open ? '(' : '[', lo, hi, v);
        return bad(c, key, msg);
    }
    *out = v;
    *has = true;
    return 0;
}

/* An integer in [lo, hi] from item f (the field `key`, or one element of it). */
static int int_of(const gctx_t *c, const char *key, const cJSON *f, long lo, long hi, long *out) {
    char msg[128];
    if (!cJSON_IsNumber(f) || f->valuedouble != floor(f->valuedouble)) return bad(c, key, "must be an integer");
    if (f->valuedouble < (double)lo || f->valuedouble > (double)hi) {
        snprintf(msg, sizeof msg, "must be in [%ld, %ld], got %.0f", lo, hi, f->valuedouble);
        return bad(c, key, msg);
    }
    *out = (long)f->valuedouble;
    return 0;
}

static int read_int(const gctx_t *c, const char *key, long lo, long hi, long *out, bool *has) {
    const cJSON *f = field(c, key);
    if (!f) return 0;
    if (int_of(c, key, f, lo, hi, out)) return -1;
    if (has) *has = true;
    return 0;
}

static long id_max(const gctx_t *c) { return c->vocab > 0 ? c->vocab - 1 : INT32_MAX; }

static int read_token(const gctx_t *c, const char *key, int32_t *out) {
    long v = -1;
    if (read_int(c, key, 0, id_max(c), &v, NULL)) return -1;
    *out = (int32_t)v;
    return 0;
}

/* eos_token_id: an integer or a list of integers. */
static int read_eos(const gctx_t *c, eos_set_t *eos) {
    const cJSON *f = field(c, "eos_token_id"), *it;
    if (!f) return 0;
    if (!cJSON_IsArray(f)) {
        long v;
        if (!cJSON_IsNumber(f)) return bad(c, "eos_token_id", "must be an integer or a list of integers");
        return int_of(c, "eos_token_id", f, 0, id_max(c), &v) ? -1 : eos_set_add(eos, (int32_t)v);
    }
    cJSON_ArrayForEach(it, f) {
        long v;
        if (int_of(c, "eos_token_id", it, 0, id_max(c), &v)) return -1;
        if (eos_set_add(eos, (int32_t)v)) {
            char msg[64];
            snprintf(msg, sizeof msg, "at most %d ids are supported", SPEX_MAX_EOS);
            return bad(c, "eos_token_id", msg);
        }
    }
    return 0;
}

static int read_fields(const gctx_t *c, gen_config_t *gc) {
    if (!cJSON_IsObject(c->root)) return spex_fail(c->err, "%s: must hold a JSON object", c->path);
    return read_number(c, "temperature", 0, 1e6, false, &gc->temperature, &gc->has_temperature) ||
                   read_number(c, "top_p", 0, 1, true, &gc->top_p, &gc->has_top_p) ||
                   read_int(c, "top_k", 0, 1L << 30, &gc->top_k, &gc->has_top_k) ||
                   read_int(c, "max_new_tokens", 1, 1L << 30, &gc->max_new_tokens, &gc->has_max_new_tokens) ||
                   read_eos(c, &gc->eos) || read_token(c, "bos_token_id", &gc->bos_id) ||
                   read_token(c, "pad_token_id", &gc->pad_id)
               ? -1
               : 0;
}

int gen_config_load(const char *dir, int vocab_size, gen_config_t *gc, spex_err_t *err) {
    *gc = (gen_config_t){.bos_id = -1, .pad_id = -1};
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, GEN_CONFIG_FILE);
    if (access(path, F_OK) != 0) return 0;
    size_t len = 0;
    char *text = spex_read_file(path, GEN_CONFIG_MAX_BYTES, &len, err);
    if (!text) return spex_err_prefix(err, "%s: ", path);
    const char *end = text;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    int rc;
    if (!root) rc = spex_fail(err, "%s: not valid JSON (error near byte %ld)", path, (long)(end - text));
    else rc = read_fields(&(gctx_t){root, path, vocab_size, err}, gc);
    cJSON_Delete(root);
    free(text);
    gc->found = rc == 0;
    return rc;
}

void gen_config_describe(const gen_config_t *gc, char *out, size_t len) {
    int k = snprintf(out, len, "%s", "");
    if (gc->has_temperature) k += snprintf(out + k, len - (size_t)k, "temperature %g, ", gc->temperature);
    if (gc->has_top_p && (size_t)k < len) k += snprintf(out + k, len - (size_t)k, "top_p %g, ", gc->top_p);
    if (gc->has_top_k && (size_t)k < len) k += snprintf(out + k, len - (size_t)k, "top_k %ld, ", gc->top_k);
    if (gc->has_max_new_tokens && (size_t)k < len)
        k += snprintf(out + k, len - (size_t)k, "max_new_tokens %ld, ", gc->max_new_tokens);
    for (int i = 0; i < gc->eos.n && (size_t)k < len; i++)
        k += snprintf(out + k, len - (size_t)k, "%s%d%s", i ? "," : "eos [", (int)gc->eos.id[i],
                      i + 1 == gc->eos.n ? "], " : "");
    if (k >= 2 && (size_t)k <= len) out[k - 2] = '\0';   /* the last ", " */
    else if (k == 0) snprintf(out, len, "no decoding defaults");
}
