/* tok_load.c - builds a tokenizer_t from tokenizer.json (+ tokenizer_config.json).
 *
 * Design: parse the whole file with cJSON, check every field we would
 * otherwise silently misinterpret (unsupported normalizers, split behaviours,
 * BPE options) and refuse it with an error naming the field, then convert to
 * flat tables: vocab and added-token strings in one arena, merges keyed by id
 * pairs; tok_tables.c then derives the lookup tables. The cJSON tree is
 * dropped before returning; nothing in tokenizer_t points into it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "coordinator/tokenizer/tok_internal.h"
#include "core/file.h"

/* Ids above this are taken as a corrupt file rather than allocated for. */
#define TOK_MAX_ID (1 << 24)

#define GPT2_PATTERN                                                                                            \
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"

/* ---- small helpers ---- */

static cJSON *parse_json_file(const char *path, spex_err_t *err) {
    size_t len;
    char *text = spex_read_file(path, 1u << 30, &len, err);
    if (!text) return NULL;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!root) {
        size_t at = end ? (size_t)(end - text) : 0;
        spex_fail(err, "invalid JSON near byte %zu", at);
    }
    free(text);
    return root;
}

/* JSON null or absent. */
static bool is_nullish(const cJSON *j) { return !j || cJSON_IsNull(j); }

static const char *type_of(const cJSON *obj) {
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(obj, "type");
    return cJSON_IsString(ty) ? ty->valuestring : NULL;
}

/* Boolean field with a default when absent; error if present but not a bool. */
static int get_bool(const cJSON *obj, const char *name, bool dflt, bool *out, const char *where, spex_err_t *err) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (is_nullish(j)) {
        *out = dflt;
        return 0;
    }
    if (!cJSON_IsBool(j)) return spex_fail(err, "%s.%s: expected true or false", where, name);
    *out = cJSON_IsTrue(j);
    return 0;
}

/* A token id: an integral JSON number in [0, TOK_MAX_ID). */
static int get_id(const cJSON *j, int32_t *id) {
    if (!cJSON_IsNumber(j) || j->valuedouble < 0 || j->valuedouble >= TOK_MAX_ID ||
        j->valuedouble != (double)(int32_t)j->valuedouble)
        return -1;
    *id = (int32_t)j->valuedouble;
    return 0;
}

static void append_utf8(char *out, size_t *n, uint32_t cp) {
    if (cp < 0x80) out[(*n)++] = (char)cp;
    else if (cp < 0x800) {
        out[(*n)++] = (char)(0xc0 | cp >> 6);
        out[(*n)++] = (char)(0x80 | (cp & 0x3f));
    } else {
        out[(*n)++] = (char)(0xe0 | cp >> 12);
        out[(*n)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[(*n)++] = (char)(0x80 | (cp & 0x3f));
    }
}

/* ---- normalizer, decoder ---- */

/* Only the identity is supported: null, or a Sequence of identities. */
static int check_normalizer(const cJSON *n, const char *where, spex_err_t *err) {
    if (is_nullish(n)) return 0;
    const char *ty = type_of(n);
    if (!ty || strcmp(ty, "Sequence") != 0)
        return spex_fail(err, "%s: type '%s' is not supported (only null or an empty Sequence)", where,
                         ty ? ty : "?");
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(n, "normalizers"), *it;
    if (!cJSON_IsArray(list)) return spex_fail(err, "%s.normalizers: expected an array", where);
    cJSON_ArrayForEach(it, list) if (check_normalizer(it, "normalizer.normalizers[]", err)) return -1;
    return 0;
}

static int check_decoder(const cJSON *d, spex_err_t *err) {
    const char *ty = is_nullish(d) ? "null" : type_of(d);
    if (!ty || strcmp(ty, "ByteLevel") != 0)
        return spex_fail(err, "decoder: type '%s' is not supported (only ByteLevel)", ty ? ty : "?");
    return 0;
}

/* ---- pre_tokenizer ---- */

static int add_split(tokenizer_t *t, const char *pattern, size_t len, bool literal, spex_err_t *err) {
    tok_split_t *s = realloc(t->splits, (t->n_splits + 1) * sizeof *s);
    if (!s) return spex_fail(err, "out of memory");
    t->splits = s;
    s = &t->splits[t->n_splits];
    memset(s, 0, sizeof *s);
    if (literal) {
        if (!(s->literal = malloc(len + 1))) return spex_fail(err, "out of memory");
        memcpy(s->literal, pattern, len + 1);
        s->literal_len = len;
    } else if (!(s->re = tok_regex_compile(pattern, len, err))) {
        return -1;
    }
    t->n_splits++;
    return 0;
}

static int load_split(tokenizer_t *t, const cJSON *p, const char *where, spex_err_t *err) {
    const cJSON *beh = cJSON_GetObjectItemCaseSensitive(p, "behavior");
    if (!cJSON_IsString(beh) || strcmp(beh->valuestring, "Isolated") != 0)
        return spex_fail(err, "%s.behavior: '%s' is not supported (only Isolated)", where,
                         cJSON_IsString(beh) ? beh->valuestring : "?");
    bool invert = false;
    if (get_bool(p, "invert", false, &invert, where, err)) return -1;
    if (invert) return spex_fail(err, "%s.invert: true is not supported", where);
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(p, "pattern");
    const cJSON *re = cJSON_GetObjectItemCaseSensitive(pat, "Regex");
    const cJSON *lit = cJSON_GetObjectItemCaseSensitive(pat, "String");
    const cJSON *str = cJSON_IsString(re) ? re : lit;
    if (!cJSON_IsString(str)) return spex_fail(err, "%s.pattern: expected {\"Regex\": ...} or {\"String\": ...}", where);
    if (add_split(t, str->valuestring, strlen(str->valuestring), str == lit, err))
        return spex_err_prefix(err, "%s.pattern: ", where);
    return 0;
}

static int load_bytelevel(tokenizer_t *t, const cJSON *p, const char *where, spex_err_t *err) {
    bool prefix = false, use_regex = false;
    /* Hugging Face's defaults for absent fields are true for both. */
    if (get_bool(p, "add_prefix_space", true, &prefix, where, err) ||
        get_bool(p, "use_regex", true, &use_regex, where, err))
        return -1;
    if (prefix) return spex_fail(err, "%s.add_prefix_space: true is not supported", where);
    return use_regex ? add_split(t, GPT2_PATTERN, strlen(GPT2_PATTERN), false, err) : 0;
}

static int load_pretokenizer(tokenizer_t *t, const cJSON *p, spex_err_t *err) {
    const char *ty = is_nullish(p) ? "null" : type_of(p);
    if (ty && !strcmp(ty, "ByteLevel")) return load_bytelevel(t, p, "pre_tokenizer", err);
    if (!ty || strcmp(ty, "Sequence") != 0)
        return spex_fail(err, "pre_tokenizer: type '%s' is not supported (only ByteLevel, or a Sequence of "
                              "Split steps ending in ByteLevel)", ty ? ty : "?");
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(p, "pretokenizers");
    if (!cJSON_IsArray(list)) return spex_fail(err, "pre_tokenizer.pretokenizers: expected an array");
    int n = cJSON_GetArraySize(list);
    for (int i = 0; i < n; i++) {
        const cJSON *step = cJSON_GetArrayItem(list, i);
        const char *st = type_of(step);
        char where[64];
        snprintf(where, sizeof where, "pre_tokenizer.pretokenizers[%d]", i);
        bool last = i == n - 1;
        if (st && !strcmp(st, "Split") && !last) {
            if (load_split(t, step, where, err)) return -1;
        } else if (st && !strcmp(st, "ByteLevel") && last) {
            return load_bytelevel(t, step, where, err);
        } else {
            return spex_fail(err, "%s: type '%s' is not supported here (only Split steps, then ByteLevel last)",
                             where, st ? st : "?");
        }
    }
    return spex_fail(err, "pre_tokenizer.pretokenizers: must end with a ByteLevel step");
}

/* ---- model: vocab and merges ---- */

static int check_model_options(const cJSON *m, spex_err_t *err) {
    const char *ty = type_of(m);
    if (ty && strcmp(ty, "BPE") != 0) return spex_fail(err, "model.type: '%s' is not supported (only BPE)", ty);
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(m, "dropout");
    if (!is_nullish(dropout) && !(cJSON_IsNumber(dropout) && dropout->valuedouble == 0))
        return spex_fail(err, "model.dropout: BPE dropout is not supported");
    const char *affixes[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(m, affixes[i]);
        if (!is_nullish(a) && !(cJSON_IsString(a) && a->valuestring[0] == '\0'))
            return spex_fail(err, "model.%s: not supported (byte-level BPE has none)", affixes[i]);
    }
    return 0;
}

/* Total bytes of vocab keys and added-token contents, to size the arena once
 * (the maps keep pointers into it, so it must never move). */
static size_t strings_size(const cJSON *vocab, const cJSON *added) {
    size_t total = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, vocab) total += strlen(it->string) + 1;
    cJSON_ArrayForEach(it, added) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(it, "content");
        if (cJSON_IsString(c)) total += strlen(c->valuestring) + 1;
    }
    return total;
}

static const char *arena_add(tokenizer_t *t, size_t *used, const char *s, size_t len) {
    char *p = t->strings + *used;
    memcpy(p, s, len + 1);
    *used += len + 1;
    return p;
}

static int load_vocab(tokenizer_t *t, const cJSON *vocab, size_t *used, spex_err_t *err) {
    if (!cJSON_IsObject(vocab)) return spex_fail(err, "model.vocab: missing or not an object");
    const cJSON *it;
    cJSON_ArrayForEach(it, vocab) {
        int32_t id;
        if (get_id(it, &id)) return spex_fail(err, "model.vocab['%s']: id is not an integer in [0, %d)", it->string, TOK_MAX_ID);
        size_t len = strlen(it->string);
        const char *key = arena_add(t, used, it->string, len);
        if (!tok_strmap_put(&t->vocab, key, len, (uint64_t)id)) return spex_fail(err, "out of memory");
        if (id >= t->vocab_size) t->vocab_size = id + 1;
    }
    if (t->vocab.count == 0) return spex_fail(err, "model.vocab: empty");
    return 0;
}

static int32_t vocab_id(const tokenizer_t *t, const char *s, size_t len) {
    uint64_t v;
    return tok_strmap_get(&t->vocab, s, len, &v) ? (int32_t)v : -1;
}

/* Split one merges entry into its two halves: "a b" or ["a", "b"]. */
static int merge_halves(const cJSON *e, const char **a, size_t *alen, const char **b, size_t *blen) {
    if (cJSON_IsString(e)) {
        const char *sp = strchr(e->valuestring, ' ');
        if (!sp || strchr(sp + 1, ' ')) return -1;
        *a = e->valuestring, *alen = (size_t)(sp - e->valuestring);
        *b = sp + 1, *blen = strlen(sp + 1);
        return 0;
    }
    if (cJSON_GetArraySize(e) != 2) return -1;
    const cJSON *x = cJSON_GetArrayItem(e, 0), *y = cJSON_GetArrayItem(e, 1);
    if (!cJSON_IsString(x) || !cJSON_IsString(y)) return -1;
    *a = x->valuestring, *alen = strlen(x->valuestring);
    *b = y->valuestring, *blen = strlen(y->valuestring);
    return 0;
}

static int load_merges(tokenizer_t *t, const cJSON *merges, spex_err_t *err) {
    if (!cJSON_IsArray(merges)) return spex_fail(err, "model.merges: missing or not an array");
    if (!tok_u64map_reserve(&t->merges, (size_t)cJSON_GetArraySize(merges))) return spex_fail(err, "out of memory");
    char buf[1024];
    uint32_t rank = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, merges) {
        const char *a, *b;
        size_t alen, blen;
        if (merge_halves(e, &a, &alen, &b, &blen))
            return spex_fail(err, "model.merges[%u]: expected \"a b\" or [\"a\", \"b\"]", rank);
        if (alen + blen >= sizeof buf) return spex_fail(err, "model.merges[%u]: token too long", rank);
        memcpy(buf, a, alen);
        memcpy(buf + alen, b, blen);
        int32_t ia = vocab_id(t, a, alen), ib = vocab_id(t, b, blen), im = vocab_id(t, buf, alen + blen);
        if (ia < 0 || ib < 0 || im < 0)
            return spex_fail(err, "model.merges[%u]: '%.*s' + '%.*s' -> '%.*s' is not in model.vocab", rank,
                             (int)alen, a, (int)blen, b, (int)(alen + blen), buf);
        uint64_t key = (uint64_t)(uint32_t)ia << 32 | (uint32_t)ib;
        if (!tok_u64map_put(&t->merges, key, (uint64_t)rank << 32 | (uint32_t)im)) return spex_fail(err, "out of memory");
        rank++;
    }
    return 0;
}

/* Every byte must have its one-character token, or BPE could not start. */
static int load_byte_ids(tokenizer_t *t, spex_err_t *err) {
    for (int b = 0; b < 256; b++) {
        char s[4];
        size_t n = 0;
        append_utf8(s, &n, tok_byte_to_cp((uint8_t)b));
        if ((t->byte_id[b] = vocab_id(t, s, n)) < 0)
            return spex_fail(err, "model.vocab: no token for byte 0x%02x ('%.*s'); not a byte-level vocabulary", b,
                             (int)n, s);
    }
    return 0;
}

/* ---- added tokens ---- */

static int load_added_one(tokenizer_t *t, const cJSON *j, size_t i, size_t *used, spex_err_t *err) {
    char where[48];
    snprintf(where, sizeof where, "added_tokens[%zu]", i);
    tok_added_t *a = &t->added[t->n_added];
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(j, "content");
    if (get_id(cJSON_GetObjectItemCaseSensitive(j, "id"), &a->id))
        return spex_fail(err, "%s.id: missing or not an integer in [0, %d)", where, TOK_MAX_ID);
    if (!cJSON_IsString(content) || !content->valuestring[0])
        return spex_fail(err, "%s.content: missing or empty", where);
    if (get_bool(j, "special", false, &a->special, where, err) || get_bool(j, "lstrip", false, &a->lstrip, where, err) ||
        get_bool(j, "rstrip", false, &a->rstrip, where, err) ||
        get_bool(j, "single_word", false, &a->single_word, where, err) ||
        get_bool(j, "normalized", !a->special, &a->normalized, where, err))
        return -1;
    a->len = (uint32_t)strlen(content->valuestring);
    a->content = arena_add(t, used, content->valuestring, a->len);
    if (!tok_strmap_put(&t->added_ids, a->content, a->len, (uint64_t)a->id)) return spex_fail(err, "out of memory");
    if (a->id >= t->vocab_size) t->vocab_size = a->id + 1;
    t->n_added++;
    return 0;
}

static int load_added(tokenizer_t *t, const cJSON *list, size_t *used, spex_err_t *err) {
    if (is_nullish(list)) return 0;
    if (!cJSON_IsArray(list)) return spex_fail(err, "added_tokens: expected an array");
    size_t n = (size_t)cJSON_GetArraySize(list), i = 0;
    if (n && !(t->added = calloc(n, sizeof *t->added))) return spex_fail(err, "out of memory");
    const cJSON *j;
    cJSON_ArrayForEach(j, list) if (load_added_one(t, j, i++, used, err)) return -1;
    return 0;
}

/* ---- tokenizer.json ---- */

static int load_model(tokenizer_t *t, const cJSON *root, spex_err_t *err) {
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    if (!cJSON_IsObject(model)) return spex_fail(err, "model: missing or not an object");
    if (check_model_options(model, err)) return -1;
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    if (!cJSON_IsObject(vocab)) return spex_fail(err, "model.vocab: missing or not an object");
    size_t total = strings_size(vocab, added), used = 0;
    if (!(t->strings = malloc(total + 1))) return spex_fail(err, "out of memory");
    if (load_vocab(t, vocab, &used, err) || load_merges(t, cJSON_GetObjectItemCaseSensitive(model, "merges"), err) ||
        load_byte_ids(t, err) || get_bool(model, "ignore_merges", false, &t->ignore_merges, "model", err) ||
        load_added(t, added, &used, err) || tok_build_matchers(t, err) || tok_build_bytes(t, total, err))
        return -1;
    return t->ignore_merges ? tok_build_raw_vocab(t, err) : 0;
}

static int load_tokenizer_json(tokenizer_t *t, const cJSON *root, spex_err_t *err) {
    if (!cJSON_IsObject(root)) return spex_fail(err, "top level: expected a JSON object");
    if (check_normalizer(cJSON_GetObjectItemCaseSensitive(root, "normalizer"), "normalizer", err) ||
        check_decoder(cJSON_GetObjectItemCaseSensitive(root, "decoder"), err) ||
        load_pretokenizer(t, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), err))
        return -1;
    return load_model(t, root, err);
}

/* ---- tokenizer_config.json ---- */

/* bos_token / eos_token: a string, or an AddedToken object with "content". */
static int config_token(const tokenizer_t *t, const cJSON *cfg, const char *name, int32_t *id, spex_err_t *err) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(cfg, name);
    *id = -1;
    if (is_nullish(j)) return 0;
    if (cJSON_IsObject(j)) j = cJSON_GetObjectItemCaseSensitive(j, "content");
    if (!cJSON_IsString(j)) return spex_fail(err, "%s: expected a string or an object with \"content\"", name);
    if ((*id = tokenizer_token_id(t, j->valuestring)) < 0)
        return spex_fail(err, "%s: '%s' is not a token of tokenizer.json", name, j->valuestring);
    return 0;
}

static int load_config(tokenizer_t *t, const char *path, spex_err_t *err) {
    cJSON *cfg = parse_json_file(path, err);
    if (!cfg) return -1;
    int rc = 0;
    if (!cJSON_IsObject(cfg)) rc = spex_fail(err, "top level: expected a JSON object");
    if (!rc) rc = config_token(t, cfg, "bos_token", &t->bos_id, err);
    if (!rc) rc = config_token(t, cfg, "eos_token", &t->eos_id, err);
    if (!rc) rc = get_bool(cfg, "add_bos_token", false, &t->add_bos, "tokenizer_config", err);
    cJSON_Delete(cfg);
    return rc;
}

/* ---- entry point ---- */

/* Resolve `path` into the tokenizer.json path and the tokenizer_config.json
 * path next to it (config[0] = '\0' if there is none). */
static int resolve_paths(const char *path, char *json, char *config, size_t cap, spex_err_t *err) {
    struct stat st;
    if (stat(path, &st) != 0) return spex_fail(err, "tokenizer '%s': %s", path, strerror(errno));
    int n;
    if (S_ISDIR(st.st_mode)) {
        n = snprintf(json, cap, "%s/tokenizer.json", path);
        snprintf(config, cap, "%s/tokenizer_config.json", path);
    } else {
        n = snprintf(json, cap, "%s", path);
        const char *slash = strrchr(path, '/');
        int dir_len = slash ? (int)(slash - path) : 1;
        snprintf(config, cap, "%.*s/tokenizer_config.json", dir_len, slash ? path : ".");
    }
    if (n < 0 || (size_t)n >= cap) return spex_fail(err, "tokenizer '%s': path too long", path);
    if (stat(config, &st) != 0) config[0] = '\0';
    return 0;
}

tokenizer_t *tokenizer_load(const char *path, spex_err_t *err) {
    char json[4096], config[4096];
    if (resolve_paths(path, json, config, sizeof json, err)) return NULL;
    OnigEncoding enc = ONIG_ENCODING_UTF8;
    onig_initialize(&enc, 1);
    tokenizer_t *t = calloc(1, sizeof *t);
    if (!t) {
        spex_fail(err, "out of memory");
        return NULL;
    }
    t->bos_id = t->eos_id = -1;
    cJSON *root = parse_json_file(json, err);
    int rc = root ? load_tokenizer_json(t, root, err) : -1;
    cJSON_Delete(root);
    if (rc) spex_err_prefix(err, "%s: ", json);
    if (!rc && config[0] && load_config(t, config, err)) {
        spex_err_prefix(err, "%s: ", config);
        rc = -1;
    }
    if (rc) {
        tokenizer_free(t);
        return NULL;
    }
    return t;
}
