/* placement.c - see placement.h. */
#include "placement.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "core/json_num.h"

static placement_t *alloc_table(int n_experts, int world, int n_slots, spex_err_t *err) {
    if (n_experts <= 0) { spex_fail(err, "placement: model has no routed experts"); return NULL; }
    if (world < 2) { spex_fail(err, "placement: world size %d leaves no worker rank", world); return NULL; }
    placement_t *p = calloc(1, sizeof *p);
    if (p) {
        p->off = calloc((size_t)n_experts + 1, sizeof *p->off);
        p->ranks = calloc((size_t)(n_slots > 0 ? n_slots : 1), sizeof *p->ranks);
    }
    if (!p || !p->off || !p->ranks) {
        placement_free(p);
        spex_fail(err, "placement: out of memory");
        return NULL;
    }
    p->n_experts = n_experts;
    p->world = world;
    return p;
}

placement_t *placement_balanced(int n_experts, int world, placement_policy_t policy, spex_err_t *err) {
    placement_t *p = alloc_table(n_experts, world, n_experts, err);
    if (!p) return NULL;
    int w = world - 1;
    for (int e = 0; e < n_experts; e++) {
        p->off[e + 1] = e + 1;
        p->ranks[e] = 1 + (policy == PLACEMENT_ROUND_ROBIN ? e % w : (int)((long)e * w / n_experts));
    }
    return p;
}

int placement_policy_parse(const char *s, placement_policy_t *out, spex_err_t *err) {
    if (!strcmp(s, "contiguous")) *out = PLACEMENT_CONTIGUOUS;
    else if (!strcmp(s, "round-robin")) *out = PLACEMENT_ROUND_ROBIN;
    else return spex_fail(err, "placement policy '%s': expected contiguous or round-robin", s);
    return 0;
}

/* Insert rank `v` of expert e into the ascending list r[0..*n). */
static int add_rank(const cJSON *v, int e, int world, int *r, int *n, spex_err_t *err) {
    int k;
    if (!json_int_in(v, INT_MIN, INT_MAX, &k)) return spex_fail(err, "expert %d: ranks must be integers", e);
    if (k == 0) return spex_fail(err, "expert %d: rank 0 is the coordinator and hosts no experts", e);
    if (k < 1 || k >= world)
        return spex_fail(err, "expert %d: rank %d is outside the job's worker ranks 1..%d", e, k, world - 1);
    int pos = *n;
    while (pos > 0 && r[pos - 1] > k) pos--;
    if (pos > 0 && r[pos - 1] == k) return spex_fail(err, "expert %d: rank %d listed twice", e, k);
    memmove(r + pos + 1, r + pos, sizeof(int) * (size_t)(*n - pos));
    r[pos] = k;
    (*n)++;
    return 0;
}

/* Ranks of one entry (a number or an array of numbers) -> r[0..*n), ascending, unique. */
static int entry_ranks(const cJSON *v, int e, int world, int *r, int *n, spex_err_t *err) {
    *n = 0;
    if (cJSON_IsNumber(v)) return add_rank(v, e, world, r, n, err);
    if (!cJSON_IsArray(v)) return spex_fail(err, "expert %d: expected a rank or a list of ranks", e);
    if (cJSON_GetArraySize(v) >= world) return spex_fail(err, "expert %d: more ranks than the job has", e);
    const cJSON *it;
    cJSON_ArrayForEach(it, v) if (add_rank(it, e, world, r, n, err)) return -1;
    if (*n == 0) return spex_fail(err, "expert %d is not hosted by any rank", e);
    return 0;
}

/* One JSON table (an entry per expert) -> t (allocated here). */
static int fill_table(const placement_t *p, placement_table_t *t, const cJSON *arr, spex_err_t *err) {
    if (!cJSON_IsArray(arr)) return spex_fail(err, "expected a list with the ranks of every expert");
    if (cJSON_GetArraySize(arr) > p->n_experts)
        return spex_fail(err, "%d entries but the model has %d routed experts", cJSON_GetArraySize(arr), p->n_experts);
    int *r = malloc(sizeof(int) * (size_t)p->world);
    t->off = calloc((size_t)p->n_experts + 1, sizeof(int));
    if (!r || !t->off) { free(r); return spex_fail(err, "out of memory"); }
    int slots = 0, rc = 0;
    for (int e = 0; e < p->n_experts && !rc; e++) {
        int n = 0;
        const cJSON *v = cJSON_GetArrayItem(arr, e);
        if (!v) { rc = spex_fail(err, "expert %d is not hosted by any rank (table has %d entries)", e, cJSON_GetArraySize(arr)); break; }
        if ((rc = entry_ranks(v, e, p->world, r, &n, err))) break;
        int *nr = realloc(t->ranks, sizeof(int) * (size_t)(slots + n));
        if (!nr) { rc = spex_fail(err, "out of memory"); break; }
        t->ranks = nr;
        memcpy(t->ranks + slots, r, sizeof(int) * (size_t)n);
        slots += n;
        t->off[e + 1] = slots;
    }
    free(r);
    return rc;
}

/* Room for per-layer tables up to `layer`. */
static int grow_layers(placement_t *p, int layer, spex_err_t *err) {
    if (layer < p->n_layers) return 0;
    placement_table_t *l = realloc(p->layer, sizeof *l * ((size_t)layer + 1));
    if (!l) return spex_fail(err, "out of memory");
    memset(l + p->n_layers, 0, sizeof *l * (size_t)(layer + 1 - p->n_layers));
    p->layer = l;
    p->n_layers = layer + 1;
    return 0;
}

/* "layers": [{"layer": L, "placement": [...]}, ...] (optional). */
static int fill_layers(placement_t *p, const cJSON *layers, spex_err_t *err) {
    if (!layers) return 0;
    if (!cJSON_IsArray(layers)) return spex_fail(err, "\"layers\": expected a list of {\"layer\": L, \"placement\": [...]}");
    const cJSON *it;
    cJSON_ArrayForEach(it, layers) {
        const cJSON *l = cJSON_GetObjectItemCaseSensitive(it, "layer");
        int L;
        if (!json_int_in(l, 0, 65535, &L)) return spex_fail(err, "\"layers\": each entry needs an integer \"layer\" >= 0");
        if (grow_layers(p, L, err)) return -1;
        if (p->layer[L].off) return spex_fail(err, "layer %d: listed twice", L);
        if (fill_table(p, &p->layer[L], cJSON_GetObjectItemCaseSensitive(it, "placement"), err))
            return spex_err_prefix(err, "layer %d: ", L);
    }
    return 0;
}

placement_t *placement_parse(const char *json, const char *origin, int n_experts, int world, spex_err_t *err) {
    cJSON *root = cJSON_ParseWithOpts(json, NULL, true);   /* nothing but whitespace may follow */
    placement_t *p = NULL;
    if (!root) {
        spex_fail(err, "placement '%s': not valid JSON (near '%.20s')", origin, cJSON_GetErrorPtr() ? cJSON_GetErrorPtr() : "");
        return NULL;
    }
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, "placement");
    if (!cJSON_IsArray(arr)) {
        spex_fail(err, "placement '%s': expected {\"placement\": [ranks of expert 0, ...]}", origin);
    } else if ((p = alloc_table(n_experts, world, 0, err))) {
        placement_table_t t = {0};
        int rc = fill_table(p, &t, arr, err);
        free(p->off), free(p->ranks);
        p->off = t.off, p->ranks = t.ranks;
        if (rc || !p->ranks || fill_layers(p, cJSON_GetObjectItemCaseSensitive(root, "layers"), err)) {
            if (!rc && !p->ranks) spex_fail(err, "out of memory");
            placement_free(p);
            p = NULL;
            spex_err_prefix(err, "placement '%s': ", origin);
        }
    }
    cJSON_Delete(root);
    return p;
}

placement_t *placement_load(const char *path, int n_experts, int world, spex_err_t *err) {
    char *text = spex_read_file(path, 64u << 20, NULL, err);
    if (!text) {
        spex_err_prefix(err, "placement '%s': ", path);
        return NULL;
    }
    placement_t *p = placement_parse(text, path, n_experts, world, err);
    free(text);
    return p;
}

void placement_free(placement_t *p) {
    if (!p) return;
    for (int l = 0; l < p->n_layers; l++) {
        free(p->layer[l].off);
        free(p->layer[l].ranks);
    }
    free(p->layer);
    free(p->off);
    free(p->ranks);
    free(p);
}

int placement_set_layer(placement_t *p, int layer, const int *off, const int *ranks, spex_err_t *err) {
    if (layer < 0) return spex_fail(err, "placement: layer %d", layer);
    for (int e = 0; e < p->n_experts; e++) {
        if (off[e + 1] <= off[e]) return spex_fail(err, "layer %d: expert %d is not hosted by any rank", layer, e);
        for (int j = off[e]; j < off[e + 1]; j++) {
            if (ranks[j] < 1 || ranks[j] >= p->world)
                return spex_fail(err, "layer %d: expert %d: rank %d is outside the worker ranks 1..%d", layer, e,
                                 ranks[j], p->world - 1);
            if (j > off[e] && ranks[j] <= ranks[j - 1])
                return spex_fail(err, "layer %d: expert %d: ranks not ascending and unique", layer, e);
        }
    }
    if (grow_layers(p, layer, err)) return -1;
    placement_table_t t = {malloc(sizeof(int) * ((size_t)p->n_experts + 1)),
                           malloc(sizeof(int) * (size_t)(off[p->n_experts] > 0 ? off[p->n_experts] : 1))};
    if (!t.off || !t.ranks) { free(t.off), free(t.ranks); return spex_fail(err, "out of memory"); }
    memcpy(t.off, off, sizeof(int) * ((size_t)p->n_experts + 1));
    memcpy(t.ranks, ranks, sizeof(int) * (size_t)off[p->n_experts]);
    free(p->layer[layer].off), free(p->layer[layer].ranks);
    p->layer[layer] = t;
    return 0;
}

int placement_max_layer(const placement_t *p) {
    for (int l = p->n_layers - 1; l >= 0; l--)
        if (p->layer[l].off) return l;
    return -1;
}

int placement_rank_layer_experts(const placement_t *p, int layer, int rank, int *out) {
    placement_table_t t = placement_table(p, layer);
    int n = 0;
    for (int e = 0; e < p->n_experts; e++)
        for (int j = t.off[e]; j < t.off[e + 1]; j++)
            if (t.ranks[j] == rank) out[n++] = e;
    return n;
}

int placement_rank_experts(const placement_t *p, int rank, int *out) {
    int n = 0;
    for (int e = 0; e < p->n_experts; e++) {
        bool on = false;
        for (int l = -1; l < p->n_layers && !on; l++) {   /* -1: the default table */
            if (l >= 0 && !p->layer[l].off) continue;
            placement_table_t t = l < 0 ? (placement_table_t){p->off, p->ranks} : p->layer[l];
            for (int j = t.off[e]; j < t.off[e + 1]; j++) on |= t.ranks[j] == rank;
        }
        if (on) out[n++] = e;
    }
    return n;
}

/* One line per rank for table t (layer `layer`, or -1 for the default). */
static void print_table(const placement_t *p, int layer, FILE *f, int *ex) {
    placement_table_t t = layer < 0 ? (placement_table_t){p->off, p->ranks} : p->layer[layer];
    int replicated = 0;
    for (int e = 0; e < p->n_experts; e++) replicated += t.off[e + 1] - t.off[e] > 1;
    if (layer < 0)
        fprintf(f, "%d routed experts on %d worker rank(s), %d replicated%s\n", p->n_experts, p->world - 1, replicated,
                placement_max_layer(p) >= 0 ? " (default table: layers without their own)" : "");
    else
        fprintf(f, "layer %d: %d replicated, %d expert slots\n", layer, replicated, t.off[p->n_experts]);
    fprintf(f, "%-6s %-8s %s\n", "rank", "experts", "ids");
    if (layer < 0) fprintf(f, "%-6s %-8s %s\n", "0", "0", "(coordinator)");
    for (int r = 1; r < p->world; r++) {
        int n = placement_rank_layer_experts(p, layer, r, ex);
        fprintf(f, "%-6d %-8d ", r, n);
        for (int i = 0; i < n; i++) {   /* ranges: 0-7,9,12-15 */
            int j = i;
            while (j + 1 < n && ex[j + 1] == ex[j] + 1) j++;
            fprintf(f, "%s%d", i ? "," : "", ex[i]);
            if (j > i) fprintf(f, "-%d", ex[j]);
            i = j;
        }
        fputc('\n', f);
    }
}

void placement_print(const placement_t *p, FILE *f) {
    int *ex = malloc(sizeof(int) * (size_t)p->n_experts);
    if (!ex) return;
    print_table(p, -1, f, ex);
    for (int l = 0; l < p->n_layers; l++)
        if (p->layer[l].off) print_table(p, l, f, ex);
    free(ex);
}

/* [[ranks of expert 0], ...] of table t; NULL when out of memory. */
static cJSON *table_json(const placement_t *p, placement_table_t t) {
    cJSON *table = cJSON_CreateArray();
    for (int e = 0; table && e < p->n_experts; e++) {
        cJSON *ranks = cJSON_CreateIntArray(t.ranks + t.off[e], t.off[e + 1] - t.off[e]);
        if (!ranks || !cJSON_AddItemToArray(table, ranks)) { cJSON_Delete(ranks); cJSON_Delete(table); return NULL; }
    }
    return table;
}

/* {"layer": L, "placement": [...]}; NULL when out of memory. */
static cJSON *layer_json(const placement_t *p, int l) {
    cJSON *o = cJSON_CreateObject(), *t = table_json(p, p->layer[l]);
    if (o && t && cJSON_AddNumberToObject(o, "layer", l) && cJSON_AddItemToObject(o, "placement", t)) return o;
    cJSON_Delete(o);
    cJSON_Delete(t);
    return NULL;
}

void *placement_to_cjson(const placement_t *p) {
    cJSON *root = cJSON_CreateObject(), *table = table_json(p, (placement_table_t){p->off, p->ranks});
    bool ok = root && table && cJSON_AddNumberToObject(root, "world", p->world) &&
              cJSON_AddItemToObject(root, "placement", table);
    if (!ok) cJSON_Delete(table);
    cJSON *layers = ok && placement_max_layer(p) >= 0 ? cJSON_AddArrayToObject(root, "layers") : NULL;
    for (int l = 0; layers && l < p->n_layers; l++) {
        if (!p->layer[l].off) continue;
        cJSON *o = layer_json(p, l);
        if (!o || !cJSON_AddItemToArray(layers, o)) { cJSON_Delete(o); ok = false; break; }
    }
    if (ok && placement_max_layer(p) >= 0 && !layers) ok = false;
    if (!ok) { cJSON_Delete(root); return NULL; }
    return root;
}

int placement_print_json(const placement_t *p, FILE *f) {
    cJSON *root = placement_to_cjson(p);
    char *text = root ? cJSON_PrintUnformatted(root) : NULL;
    if (text) fprintf(f, "%s\n", text);
    cJSON_free(text);
    cJSON_Delete(root);
    return text ? 0 : -1;
}
