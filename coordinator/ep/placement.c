/* placement.c - see placement.h. */
#include "placement.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"

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
    if (!cJSON_IsNumber(v) || v->valuedouble != (double)(int)v->valuedouble)
        return spex_fail(err, "expert %d: ranks must be integers", e);
    int k = (int)v->valuedouble;
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

static int fill_table(placement_t *p, const cJSON *arr, spex_err_t *err) {
    int *r = malloc(sizeof(int) * (size_t)p->world);
    if (!r) return spex_fail(err, "out of memory");
    int slots = 0, rc = 0;
    for (int e = 0; e < p->n_experts && !rc; e++) {
        int n = 0;
        const cJSON *v = cJSON_GetArrayItem(arr, e);
        if (!v) { rc = spex_fail(err, "expert %d is not hosted by any rank (table has %d entries)", e, cJSON_GetArraySize(arr)); break; }
        if ((rc = entry_ranks(v, e, p->world, r, &n, err))) break;
        int *nr = realloc(p->ranks, sizeof(int) * (size_t)(slots + n));
        if (!nr) { rc = spex_fail(err, "out of memory"); break; }
        p->ranks = nr;
        memcpy(p->ranks + slots, r, sizeof(int) * (size_t)n);
        slots += n;
        p->off[e + 1] = slots;
    }
    free(r);
    return rc;
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
    } else if (cJSON_GetArraySize(arr) > n_experts) {
        spex_fail(err, "placement '%s': %d entries but the model has %d routed experts", origin,
                  cJSON_GetArraySize(arr), n_experts);
    } else if ((p = alloc_table(n_experts, world, 0, err)) && fill_table(p, arr, err)) {
        placement_free(p);
        p = NULL;
        spex_err_prefix(err, "placement '%s': ", origin);
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
    free(p->off);
    free(p->ranks);
    free(p);
}

int placement_rank_experts(const placement_t *p, int rank, int *out) {
    int n = 0;
    for (int e = 0; e < p->n_experts; e++)
        for (int j = p->off[e]; j < p->off[e + 1]; j++)
            if (p->ranks[j] == rank) out[n++] = e;
    return n;
}

void placement_print(const placement_t *p, FILE *f) {
    int *ex = malloc(sizeof(int) * (size_t)p->n_experts);
    if (!ex) return;
    int replicated = 0;
    for (int e = 0; e < p->n_experts; e++) replicated += p->off[e + 1] - p->off[e] > 1;
    fprintf(f, "%d routed experts on %d worker rank(s), %d replicated\n", p->n_experts, p->world - 1, replicated);
    fprintf(f, "%-6s %-8s %s\n", "rank", "experts", "ids");
    fprintf(f, "%-6s %-8s %s\n", "0", "0", "(coordinator)");
    for (int r = 1; r < p->world; r++) {
        int n = placement_rank_experts(p, r, ex);
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
    free(ex);
}

/* {"world":N,"placement":[[ranks of expert 0],...]} as a cJSON tree; NULL when out of memory. */
static cJSON *placement_json(const placement_t *p) {
    cJSON *root = cJSON_CreateObject();
    cJSON *table = root && cJSON_AddNumberToObject(root, "world", p->world) ? cJSON_AddArrayToObject(root, "placement")
                                                                            : NULL;
    if (!table) { cJSON_Delete(root); return NULL; }
    for (int e = 0; e < p->n_experts; e++) {
        cJSON *ranks = cJSON_CreateIntArray(p->ranks + p->off[e], p->off[e + 1] - p->off[e]);
        if (!ranks || !cJSON_AddItemToArray(table, ranks)) { cJSON_Delete(ranks); cJSON_Delete(root); return NULL; }
    }
    return root;
}

int placement_print_json(const placement_t *p, FILE *f) {
    cJSON *root = placement_json(p);
    char *text = root ? cJSON_PrintUnformatted(root) : NULL;
    if (text) fprintf(f, "%s\n", text);
    cJSON_free(text);
    cJSON_Delete(root);
    return text ? 0 : -1;
}
