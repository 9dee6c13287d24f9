/* expert_shard.c - see expert_shard.h.
 *
 * apply(): validate the routing and bucket the pairs by expert (a counting
 * sort, stable in pair order), then run each busy expert once over its rows:
 * gather its rows into a contiguous block, SwiGLU, and write w_p * y into the
 * pair's slot. Sum mode then adds each row's slots in pair order. */
#include "expert_shard.h"
#include "arena.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>


struct expert_shard {
    int n_layers, n_experts, hidden, inter;
    int *ids, n_ids;
    expert_t *experts;         /* [n_layers * n_experts]; hosted ones loaded */
    bool *hosted;              /* [n_layers * n_experts] */
    uint64_t bytes;
    /* scratch, grown on demand and kept */
    int *order, *offset, *busy; /* [pairs] pair indices by expert; [n_experts + 1]; [n_experts] */
    int *row_of;                /* [pairs] row of each pair */
    size_t pairs_cap;
    arena_t each;               /* sum mode: [pairs, hidden] */
    arena_t *thr;               /* per pool thread: gather + swiglu + output */
    int n_thr;
};

void expert_shard_free(expert_shard_t *s) {
    if (!s) return;
    for (size_t i = 0; s->experts && s->hosted && i < (size_t)s->n_layers * s->n_experts; i++)
        if (s->hosted[i]) expert_free(&s->experts[i]);
    for (int t = 0; t < s->n_thr; t++) arena_free(&s->thr[t]);
    free(s->thr);
    arena_free(&s->each);
    free(s->order);
    free(s->offset);
    free(s->busy);
    free(s->row_of);
    free(s->experts);
    free(s->hosted);
    free(s->ids);
    free(s);
}

static int load_layer(expert_shard_t *s, const tensor_store_t *ts, int l, int *done, int total,
                      void (*progress)(void *, int, int), void *user, spex_err_t *err) {
    for (int e = 0; e < s->n_experts; e++) {
        char prefix[256];
        size_t slot = (size_t)l * s->n_experts + e;
        if (!s->hosted[slot]) continue;
        snprintf(prefix, sizeof prefix, "model.layers.%d.mlp.experts.%d", l, e);
        if (expert_load(&s->experts[slot], ts, prefix, s->hidden, s->inter, err)) {
            s->hosted[slot] = false;   /* nothing to free */
            return -1;
        }
        s->bytes += expert_bytes(&s->experts[slot]);
        if (progress && (++*done % 4 == 0 || *done == total)) progress(user, *done, total);
    }
    return 0;
}

/* The shard's frame: sizes, tables and scratch, nothing loaded yet. */
static expert_shard_t *shard_alloc(const spex_config_t *cfg, spex_err_t *err) {
    expert_shard_t *s = calloc(1, sizeof *s);
    if (!s) { spex_fail(err, "experts: out of memory"); return NULL; }
    s->n_layers = cfg->num_hidden_layers + cfg->num_nextn_predict_layers;
    s->n_experts = cfg->n_routed_experts;
    s->hidden = cfg->hidden_size;
    s->inter = cfg->moe_intermediate_size;
    size_t slots = (size_t)s->n_layers * (s->n_experts > 0 ? s->n_experts : 1);
    s->experts = calloc(slots, sizeof *s->experts);
    s->hosted = calloc(slots, sizeof *s->hosted);
    s->ids = malloc(sizeof(int) * (size_t)(s->n_experts > 0 ? s->n_experts : 1));
    s->offset = calloc((size_t)s->n_experts + 1, sizeof(int));
    s->busy = calloc((size_t)s->n_experts + 1, sizeof(int));
    if (!s->experts || !s->hosted || !s->ids || !s->offset || !s->busy) {
        expert_shard_free(s);
        spex_fail(err, "experts: out of memory");
        return NULL;
    }
    return s;
}

/* Mark s->hosted from `want` (MoE layers only), list the union in s->ids, load. */
static expert_shard_t *shard_load(expert_shard_t *s, const spex_config_t *cfg, const tensor_store_t *ts,
                                  const bool *want, void (*progress)(void *, int, int), void *user,
                                  spex_err_t *err) {
    int total = 0, done = 0, E = s->n_experts;
    for (int l = 0; l < s->n_layers; l++)
        for (int e = 0; config_layer_is_moe(cfg, l) && e < E; e++)
            total += s->hosted[(size_t)l * E + e] = want[(size_t)l * E + e];
    for (int e = 0; e < E; e++) {
        bool any = false;
        for (int l = 0; l < s->n_layers; l++) any |= s->hosted[(size_t)l * E + e];
        if (any) s->ids[s->n_ids++] = e;
    }
    for (int l = 0; l < s->n_layers; l++) {
        if (config_layer_is_moe(cfg, l) && load_layer(s, ts, l, &done, total, progress, user, err)) {
            expert_shard_free(s);
            return NULL;
        }
        if (tensor_store_residency(ts).copy) tensor_store_release_mapped(ts);   /* scales were read in place */
    }
    return s;
}

expert_shard_t *expert_shard_create(const spex_config_t *cfg, const tensor_store_t *ts, const int *ids, int n_ids,
                                    void (*progress)(void *user, int done, int total), void *user,
                                    spex_err_t *err) {
    expert_shard_t *s = shard_alloc(cfg, err);
    if (!s) return NULL;
    int E = s->n_experts;
    bool *want = calloc((size_t)s->n_layers * (E > 0 ? E : 1), sizeof *want);
    if (!want) { expert_shard_free(s); spex_fail(err, "experts: out of memory"); return NULL; }
    for (int i = 0; i < n_ids; i++) {
        if (ids[i] < 0 || ids[i] >= E || (i > 0 && ids[i] <= ids[i - 1])) {
            spex_fail(err, "expert list must be ascending ids below %d (entry %d is %d)", E, i, ids[i]);
            expert_shard_free(s);
            free(want);
            return NULL;
        }
        for (int l = 0; l < s->n_layers; l++) want[(size_t)l * E + ids[i]] = true;
    }
    s = shard_load(s, cfg, ts, want, progress, user, err);
    free(want);
    return s;
}

expert_shard_t *expert_shard_create_layers(const spex_config_t *cfg, const tensor_store_t *ts, const bool *hosted,
                                           void (*progress)(void *user, int done, int total), void *user,
                                           spex_err_t *err) {
    expert_shard_t *s = shard_alloc(cfg, err);
    return s ? shard_load(s, cfg, ts, hosted, progress, user, err) : NULL;
}

const bool *expert_shard_hosted(const expert_shard_t *s) { return s->hosted; }

const int *expert_shard_ids(const expert_shard_t *s, int *n_ids) {
    *n_ids = s->n_ids;
    return s->ids;
}

uint64_t expert_shard_bytes(const expert_shard_t *s) { return s->bytes; }

size_t expert_rows_pairs(const expert_rows_t *r) {
    if (!r->counts) return (size_t)r->n * (size_t)(r->k > 0 ? r->k : 0);
    size_t p = 0;
    for (int i = 0; i < r->n; i++) p += r->counts[i];
    return p;
}

static int row_count(const expert_rows_t *r, int i) { return r->counts ? (int)r->counts[i] : r->k; }

/* Check ids and bucket pairs by expert into s->order / s->offset. */
static int plan(expert_shard_t *s, int layer, const expert_rows_t *r, size_t pairs, spex_err_t *err) {
    if (pairs > s->pairs_cap) {
        int *o = realloc(s->order, sizeof(int) * pairs), *w = o ? realloc(s->row_of, sizeof(int) * pairs) : NULL;
        if (o) s->order = o;
        if (w) s->row_of = w;
        if (!o || !w) return spex_fail(err, "experts: out of memory for %zu routed pairs", pairs);
        s->pairs_cap = pairs;
    }
    int E = s->n_experts;
    memset(s->offset, 0, sizeof(int) * ((size_t)E + 1));
    const bool *host = s->hosted + (size_t)layer * E;
    size_t p = 0;
    for (int i = 0; i < r->n; i++)
        for (int j = 0, c = row_count(r, i); j < c; j++, p++) {
            uint32_t e = r->experts[p];
            if (e >= (uint32_t)E || !host[e])
                return spex_fail(err, "(layer %d, row %d): expert %u is not hosted here", layer, i, e);
            if (j > 0 && e <= r->experts[p - 1])
                return spex_fail(err, "(layer %d, row %d): experts not ascending", layer, i);
            s->row_of[p] = i;
            s->offset[e + 1]++;
        }
    for (int e = 0; e < E; e++) s->offset[e + 1] += s->offset[e];
    int *fill = s->busy;   /* reused as a cursor here, rebuilt below */
    memcpy(fill, s->offset, sizeof(int) * (size_t)E);
    for (size_t q = 0; q < pairs; q++) s->order[fill[r->experts[q]]++] = (int)q;
    return 0;
}

typedef struct run_ctx {
    expert_shard_t *s;
    const exec_t *ex;
    int layer;
    const expert_rows_t *r;
    float *each;       /* [pairs, hidden] */
    int n_busy;
} run_ctx_t;

/* Expert busy[task] over its rows, serially on pool thread `thread` when fanned out. */
static void run_expert(void *vctx, int task, int thread) {
    run_ctx_t *c = vctx;
    expert_shard_t *s = c->s;
    int e = s->busy[task], m = s->offset[e + 1] - s->offset[e], H = s->hidden;
    const int *pairs = s->order + s->offset[e];
    float *xin = s->thr[thread].p, *y = xin + (size_t)m * H, *scratch = y + (size_t)m * H;
    for (int i = 0; i < m; i++)
        memcpy(xin + (size_t)i * H, c->r->x + (size_t)s->row_of[pairs[i]] * H, sizeof(float) * H);
    exec_t ex = c->n_busy > 1 ? exec_serial(c->ex, thread) : *c->ex;
    expert_forward(&ex, &s->experts[(size_t)c->layer * s->n_experts + e], xin, y, m, scratch);
    for (int i = 0; i < m; i++) {
        float w = c->r->weights[pairs[i]], *o = c->each + (size_t)pairs[i] * H;
        const float *yi = y + (size_t)i * H;
        for (int k = 0; k < H; k++) o[k] = w * yi[k];
    }
}

/* Per-thread scratch for the largest expert batch of this call. */
static int reserve_threads(expert_shard_t *s, int threads, int max_m, spex_err_t *err) {
    if (threads > s->n_thr) {
        arena_t *t = realloc(s->thr, sizeof *t * (size_t)threads);
        if (!t) return spex_fail(err, "experts: out of memory");
        memset(t + s->n_thr, 0, sizeof *t * (size_t)(threads - s->n_thr));
        s->thr = t;
        s->n_thr = threads;
    }
    size_t need = (size_t)max_m * (2 * (size_t)s->hidden + 2 * (size_t)s->inter);
    for (int i = 0; i < threads; i++)
        if (!arena_floats(&s->thr[i], need)) return spex_fail(err, "experts: out of memory for %d rows", max_m);
    return 0;
}

int expert_shard_apply(expert_shard_t *s, const exec_t *ex, int layer, const expert_rows_t *r, bool sum,
                       float *out, int64_t *tokens_per_expert, spex_err_t *err) {
    if (layer < 0 || layer >= s->n_layers) return spex_fail(err, "experts: no layer %d", layer);
    size_t pairs = expert_rows_pairs(r), H = (size_t)s->hidden;
    if (sum) memset(out, 0, sizeof(float) * (size_t)r->n * H);
    if (pairs == 0) return 0;
    if (plan(s, layer, r, pairs, err)) return -1;
    int n_busy = 0, max_m = 0;
    for (int e = 0; e < s->n_experts; e++) {
        int m = s->offset[e + 1] - s->offset[e];
        if (m == 0) continue;
        s->busy[n_busy++] = e;
        if (m > max_m) max_m = m;
        if (tokens_per_expert) tokens_per_expert[e] += m;
    }
    float *each = sum ? arena_floats(&s->each, pairs * H) : out;
    if (!each) return spex_fail(err, "experts: out of memory for %zu routed pairs", pairs);
    int threads = ex->thread < 0 && n_busy > 1 ? threadpool_size(ex->pool) : 1;
    if (reserve_threads(s, threads, max_m, err)) return -1;
    run_ctx_t c = {s, ex, layer, r, each, threads > 1 ? n_busy : 1};
    if (threads > 1) threadpool_run(ex->pool, run_expert, &c, n_busy);
    else
        for (int t = 0; t < n_busy; t++) run_expert(&c, t, 0);   /* shard scratch 0, caller's exec */
    if (!sum) return 0;
    for (size_t p = 0; p < pairs; p++) {   /* pair order = ascending experts within a row */
        float *o = out + (size_t)s->row_of[p] * H;
        const float *v = each + p * H;
        for (size_t k = 0; k < H; k++) o[k] += v[k];
    }
    return 0;
}
