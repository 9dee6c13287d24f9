/* eplb_load.c - see eplb_load.h. */
#include "eplb_load.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <stdlib.h>

#include "core/file.h"
#include "core/json_num.h"

void eplb_load_free(eplb_load_t *l) {
    if (!l) return;
    free(l->tokens);
    free(l->measured);
    *l = (eplb_load_t){0};
}

/* expert_load[i]: its layer and tokens into out. */
static int parse_record(const cJSON *o, int i, const spex_config_t *cfg, eplb_load_t *out, spex_err_t *err) {
    const cJSON *l = cJSON_GetObjectItemCaseSensitive(o, "layer");
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "tokens_per_expert");
    int L;
    if (!json_int_in(l, INT_MIN, INT_MAX, &L)) return spex_fail(err, "expert_load[%d].layer: expected an integer", i);
    if (L < 0 || L >= out->n_layers || !config_layer_is_moe(cfg, L))
        return spex_fail(err, "expert_load[%d].layer %d: the model has no MoE layer %d (layers 0..%d, first %d dense; "
                         "stats of another model?)", i, L, L, out->n_layers - 1, cfg->first_k_dense_replace);
    if (out->measured[L]) return spex_fail(err, "expert_load[%d].layer %d: listed twice", i, L);
    if (!cJSON_IsArray(t)) return spex_fail(err, "expert_load[%d].tokens_per_expert: expected a list of counts", i);
    if (cJSON_GetArraySize(t) != out->n_experts)
        return spex_fail(err, "expert_load[%d].tokens_per_expert has %d entries, the model has %d routed experts "
                         "(stats of another model?)", i, cJSON_GetArraySize(t), out->n_experts);
    int e = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, t) {
        if (!cJSON_IsNumber(v) || v->valuedouble < 0)
            return spex_fail(err, "expert_load[%d].tokens_per_expert[%d]: expected a count >= 0", i, e);
        out->tokens[(size_t)L * out->n_experts + e++] = v->valuedouble;
    }
    out->measured[L] = true;
    return 0;
}

/* The "expert_load" list of the stats object, or NULL. */
static const cJSON *find_load(const cJSON *root) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(root, "expert_load");
    if (a) return a;
    return cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "expert_parallelism"), "expert_load");
}

static int parse_all(const cJSON *root, const spex_config_t *cfg, eplb_load_t *out, spex_err_t *err) {
    const cJSON *arr = find_load(root);
    if (!cJSON_IsArray(arr))
        return spex_fail(err, "no \"expert_load\" list (write the file with --ep-stats FILE, or --stats FILE)");
    out->n_layers = cfg->num_hidden_layers + cfg->num_nextn_predict_layers;
    out->n_experts = cfg->n_routed_experts;
    out->tokens = calloc((size_t)out->n_layers * (size_t)out->n_experts + 1, sizeof *out->tokens);
    out->measured = calloc((size_t)out->n_layers + 1, sizeof *out->measured);
    if (!out->tokens || !out->measured) return spex_fail(err, "out of memory");
    int i = 0, any = 0;
    const cJSON *o;
    cJSON_ArrayForEach(o, arr) {
        if (parse_record(o, i++, cfg, out, err)) return -1;
        any = 1;
    }
    return any ? 0 : spex_fail(err, "\"expert_load\" is empty (no MoE layer ran)");
}

int eplb_load_parse(const char *json, const char *origin, const spex_config_t *cfg, eplb_load_t *out,
                    spex_err_t *err) {
    *out = (eplb_load_t){0};
    cJSON *root = cJSON_ParseWithOpts(json, NULL, true);
    int rc;
    if (!root)
        rc = spex_fail(err, "not valid JSON (near '%.20s')", cJSON_GetErrorPtr() ? cJSON_GetErrorPtr() : "");
    else
        rc = parse_all(root, cfg, out, err);
    cJSON_Delete(root);
    if (rc) {
        eplb_load_free(out);
        spex_err_prefix(err, "stats '%s': ", origin);
    }
    return rc;
}

int eplb_load_read(const char *path, const spex_config_t *cfg, eplb_load_t *out, spex_err_t *err) {
    *out = (eplb_load_t){0};
    char *text = spex_read_file(path, 256u << 20, NULL, err);
    if (!text) return spex_err_prefix(err, "stats '%s': ", path);
    int rc = eplb_load_parse(text, path, cfg, out, err);
    free(text);
    return rc;
}
