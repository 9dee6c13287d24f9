/* eplb.c - see eplb.h. */
#include "eplb.h"

#include <stdlib.h>
#include <string.h>

double eplb_rank_load(const placement_t *p, int layer, const double *tokens, double *rank_load, double *mean) {
    placement_table_t t = placement_table(p, layer);
    memset(rank_load, 0, sizeof(double) * (size_t)p->world);
    for (int e = 0; e < p->n_experts; e++) {
        int n = t.off[e + 1] - t.off[e];
        for (int j = t.off[e]; j < t.off[e + 1]; j++) rank_load[t.ranks[j]] += tokens[e] / n;
    }
    double mx = 0, sum = 0;
    for (int r = 1; r < p->world; r++) {
        sum += rank_load[r];
        mx = rank_load[r] > mx ? rank_load[r] : mx;
    }
    *mean = p->world > 1 ? sum / (p->world - 1) : 0;
    return mx;
}

int eplb_max_redundant(int n_experts, int world) { return world > 1 ? n_experts * (world - 2) : 0; }

/* Scratch for one layer. */
typedef struct eplb_work {
    int E, W, R;
    int *reps;         /* [E] replicas per expert */
    int *item;         /* [E + R] expert of each replica, heaviest first */
    int *rank_of;      /* [E + R] rank given to item i */
    int *slots;        /* [W + 1] replicas per rank */
    double *rload;     /* [W + 1] expected load per rank */
    bool *has;         /* [(W + 1) * E] rank already hosts the expert */
    const double *tok; /* [E] */
} eplb_work_t;

/* Step 1: R extra replicas, each to the expert with the highest load per replica. */
static void choose_replicas(eplb_work_t *w) {
    for (int e = 0; e < w->E; e++) w->reps[e] = 1;
    for (int r = 0; r < w->R; r++) {
        int best = -1;
        for (int e = 0; e < w->E; e++)
            if (w->reps[e] < w->W && (best < 0 || w->tok[e] / w->reps[e] > w->tok[best] / w->reps[best])) best = e;
        w->reps[best]++;   /* exists: R <= E * (W - 1) was checked */
    }
}

/* The E + R replicas, heaviest per-replica load first (ties: lower expert id). */
static void order_items(eplb_work_t *w) {
    int n = 0;
    for (int e = 0; e < w->E; e++)
        for (int k = 0; k < w->reps[e]; k++) w->item[n++] = e;
    /* insertion sort (qsort has no context pointer); E + R is at most a few thousand */
    for (int i = 1; i < n; i++) {
        int v = w->item[i], j = i;
        while (j > 0 && ((w->tok[w->item[j - 1]] / w->reps[w->item[j - 1]] < w->tok[v] / w->reps[v]) ||
                         (w->tok[w->item[j - 1]] / w->reps[w->item[j - 1]] == w->tok[v] / w->reps[v] &&
                          w->item[j - 1] > v))) {
            w->item[j] = w->item[j - 1];
            j--;
        }
        w->item[j] = v;
    }
}

/* The least-loaded rank without expert e, among those with room if any (ties: fewer slots, lower id). */
static int pick_rank(const eplb_work_t *w, int e, int cap) {
    int best = -1;
    for (int pass = 0; pass < 2 && best < 0; pass++)
        for (int r = 1; r <= w->W; r++) {
            if (w->has[(size_t)r * w->E + e] || (pass == 0 && w->slots[r] >= cap)) continue;
            if (best < 0 || w->rload[r] < w->rload[best] ||
                (w->rload[r] == w->rload[best] && w->slots[r] < w->slots[best]))
                best = r;
        }
    return best;   /* >= 0: reps(e) <= W */
}

/* Step 2: pack the replicas; fills off[E + 1] and ranks[E + R] (ascending per expert). */
static void pack(eplb_work_t *w, int *off, int *ranks) {
    int n = w->E + w->R, cap = (n + w->W - 1) / w->W;
    memset(w->slots, 0, sizeof(int) * (size_t)(w->W + 1));
    memset(w->rload, 0, sizeof(double) * (size_t)(w->W + 1));
    memset(w->has, 0, sizeof(bool) * (size_t)(w->W + 1) * (size_t)w->E);
    for (int i = 0; i < n; i++) {
        int e = w->item[i], r = pick_rank(w, e, cap);
        w->rank_of[i] = r;
        w->slots[r]++;
        w->rload[r] += w->tok[e] / w->reps[e];
        w->has[(size_t)r * w->E + e] = true;
    }
    off[0] = 0;
    for (int e = 0; e < w->E; e++) {
        int k = off[e];
        for (int r = 1; r <= w->W; r++)
            if (w->has[(size_t)r * w->E + e]) ranks[k++] = r;
        off[e + 1] = k;
    }
}

static void work_free(eplb_work_t *w) {
    free(w->reps), free(w->item), free(w->rank_of), free(w->slots), free(w->rload), free(w->has);
}

static int work_alloc(eplb_work_t *w, int E, int W, int R) {
    *w = (eplb_work_t){.E = E, .W = W, .R = R};
    w->reps = malloc(sizeof(int) * (size_t)E);
    w->item = malloc(sizeof(int) * (size_t)(E + R));
    w->rank_of = malloc(sizeof(int) * (size_t)(E + R));
    w->slots = malloc(sizeof(int) * (size_t)(W + 1));
    w->rload = malloc(sizeof(double) * (size_t)(W + 1));
    w->has = malloc(sizeof(bool) * (size_t)(W + 1) * (size_t)E);
    return w->reps && w->item && w->rank_of && w->slots && w->rload && w->has ? 0 : -1;
}

/* Steps 1-3 for one layer: its own table in out, unless the base's is at least as good. */
static int derive_layer(eplb_work_t *w, const placement_t *base, int layer, placement_t *out, int *off, int *ranks,
                        double *rl, spex_err_t *err) {
    choose_replicas(w);
    order_items(w);
    pack(w, off, ranks);
    double mean, base_max = eplb_rank_load(base, layer, w->tok, rl, &mean), max = 0;
    for (int r = 1; r <= w->W; r++) max = w->rload[r] > max ? w->rload[r] : max;
    if (max >= base_max) {   /* keep the base's table for this layer */
        placement_table_t t = placement_table(base, layer);
        return placement_set_layer(out, layer, t.off, t.ranks, err);
    }
    return placement_set_layer(out, layer, off, ranks, err);
}

static placement_t *clone_default(const placement_t *base, spex_err_t *err) {
    placement_t *p = placement_balanced(base->n_experts, base->world, PLACEMENT_CONTIGUOUS, err);
    if (!p) return NULL;
    int n = base->off[base->n_experts];
    int *ranks = realloc(p->ranks, sizeof(int) * (size_t)(n > 0 ? n : 1));
    if (!ranks) { placement_free(p); spex_fail(err, "out of memory"); return NULL; }
    p->ranks = ranks;
    memcpy(p->off, base->off, sizeof(int) * ((size_t)base->n_experts + 1));
    memcpy(p->ranks, base->ranks, sizeof(int) * (size_t)n);
    return p;
}

placement_t *eplb_derive(const eplb_load_t *load, const placement_t *base, int redundant, spex_err_t *err) {
    int E = base->n_experts, W = base->world - 1, max_r = eplb_max_redundant(E, base->world);
    if (load->n_experts != E) {
        spex_fail(err, "load has %d experts per layer, the placement %d", load->n_experts, E);
        return NULL;
    }
    if (redundant < 0 || redundant > max_r) {
        spex_fail(err, "--redundant %d: %d worker rank(s) can hold at most %d redundant experts per layer "
                  "(each of the %d experts at most once per rank, %d x (%d - 1))", redundant, W, max_r, E, E, W);
        return NULL;
    }
    eplb_work_t w = {0};
    placement_t *out = clone_default(base, err);
    int *off = malloc(sizeof(int) * ((size_t)E + 1)), *ranks = malloc(sizeof(int) * (size_t)(E + redundant));
    double *rl = malloc(sizeof(double) * (size_t)base->world);
    int rc = out ? 0 : -1;
    if (!rc && (!off || !ranks || !rl || work_alloc(&w, E, W, redundant))) rc = spex_fail(err, "out of memory");
    for (int l = 0; l < load->n_layers && !rc; l++) {
        if (!load->measured[l]) continue;
        w.tok = load->tokens + (size_t)l * E;
        rc = derive_layer(&w, base, l, out, off, ranks, rl, err);
    }
    work_free(&w);
    free(off), free(ranks), free(rl);
    if (rc) { placement_free(out); return NULL; }
    return out;
}
