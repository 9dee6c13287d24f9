/* prefix_cache.c - see prefix_cache.h. Shapes: a node's rows are
 * [n_main + n_mtp layers, PREFIX_BLOCK positions, width floats], then (with
 * MTP layers) the main hidden states [PREFIX_BLOCK positions, hidden floats].
 *
 * Node rows come from slabs mapped on their own, not from malloc: interleaved
 * with the sequences' KV caches on the heap, a growing cache kept pushing the
 * heap's top up, so each new sequence's (larger) KV cache landed on pages never
 * touched before and a cached turn spent its restore in page faults (15-30 of
 * them, ~12 us each on the development VM: 0.2-0.4 ms of a 3.7 ms turn). An
 * evicted node's rows go back to the free list of its slab pool. */
#include "prefix_cache.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* Node rows per slab (at most; a budget of fewer nodes gets a smaller slab). */
enum { SLAB_NODES = 64 };

typedef struct pc_node {
    int32_t tok[PREFIX_BLOCK];
    int n_tok;            /* tokens held: PREFIX_BLOCK, or fewer in a leaf (a prompt's tail) */
    struct pc_node *parent;
    struct pc_node **kids;
    int n_kids, cap_kids;
    float *rows;          /* [layers, PREFIX_BLOCK, width]; NULL for the root */
    int mtp_rows;         /* leading positions whose MTP rows are held */
    int hid_rows;         /* leading positions whose main hidden states are held */
    uint64_t used;        /* LRU tick */
    int slot;             /* index in prefix_cache.all */
} pc_node_t;

struct prefix_cache {
    int n_main, n_mtp, width, hidden;
    size_t node_bytes;
    uint64_t tick;
    pc_node_t root;
    pc_node_t **all;      /* every non-root node, for the LRU scan */
    int n_all, cap_all;
    size_t rows_bytes;    /* one node's rows */
    void **slabs;         /* mapped slabs of node rows */
    size_t *slab_len;
    int n_slabs, cap_slabs;
    float *free_rows;     /* free list of node rows; the first bytes of each link to the next */
    prefix_cache_stats_t st;
};

/* ---------------------------------------------------------------- node rows */

/* Map one more slab of node rows (no more than the budget can hold) onto the free list. */
static bool slab_grow(prefix_cache_t *pc) {
    if (pc->n_slabs == pc->cap_slabs) {
        int cap = pc->cap_slabs ? 2 * pc->cap_slabs : 8;
        void **s = realloc(pc->slabs, sizeof *s * (size_t)cap);
        if (s) pc->slabs = s;
        size_t *l = s ? realloc(pc->slab_len, sizeof *l * (size_t)cap) : NULL;
        if (!l) return false;
        pc->slab_len = l, pc->cap_slabs = cap;
    }
    size_t fit = pc->st.max_bytes / pc->node_bytes, nodes = fit < SLAB_NODES ? (fit ? fit : 1) : SLAB_NODES;
    size_t len = nodes * pc->rows_bytes;
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return false;
    pc->slabs[pc->n_slabs] = p;
    pc->slab_len[pc->n_slabs++] = len;
    for (size_t i = nodes; i-- > 0;) {
        float *r = (float *)((char *)p + i * pc->rows_bytes);
        memcpy(r, &pc->free_rows, sizeof pc->free_rows);
        pc->free_rows = r;
    }
    return true;
}

static float *rows_take(prefix_cache_t *pc) {
    if (!pc->free_rows && !slab_grow(pc)) return NULL;
    float *r = pc->free_rows;
    memcpy(&pc->free_rows, r, sizeof pc->free_rows);
    return r;
}

static void rows_give(prefix_cache_t *pc, float *r) {
    if (!r) return;
    memcpy(r, &pc->free_rows, sizeof pc->free_rows);
    pc->free_rows = r;
}

prefix_cache_t *prefix_cache_create(int n_main, int n_mtp, int width, int hidden, size_t max_bytes, spex_err_t *err) {
    if (n_main <= 0 || n_mtp < 0 || width <= 0 || hidden < 0) {
        spex_fail(err, "prefix cache: invalid shape (%d main layers, %d MTP layers, width %d)", n_main, n_mtp, width);
        return NULL;
    }
    prefix_cache_t *pc = calloc(1, sizeof *pc);
    if (!pc) {
        spex_fail(err, "prefix cache: out of memory");
        return NULL;
    }
    pc->n_main = n_main, pc->n_mtp = n_mtp, pc->width = width, pc->hidden = n_mtp > 0 ? hidden : 0;
    pc->rows_bytes = sizeof(float) * PREFIX_BLOCK * ((size_t)(n_main + n_mtp) * (size_t)width + (size_t)pc->hidden);
    pc->node_bytes = pc->rows_bytes + sizeof(pc_node_t);
    pc->st.max_bytes = max_bytes;
    return pc;
}

static void node_free(prefix_cache_t *pc, pc_node_t *n) {
    rows_give(pc, n->rows);
    free(n->kids);
}

void prefix_cache_free(prefix_cache_t *pc) {
    if (!pc) return;
    for (int i = 0; i < pc->n_all; i++) {
        free(pc->all[i]->kids);
        free(pc->all[i]);
    }
    for (int i = 0; i < pc->n_slabs; i++) munmap(pc->slabs[i], pc->slab_len[i]);
    free(pc->slabs);
    free(pc->slab_len);
    free(pc->all);
    free(pc->root.kids);
    free(pc);
}

/* Tokens of a node's block that tok[0, n) starts with. */
static int node_common(const pc_node_t *k, const int32_t *tok, int n) {
    int lim = k->n_tok < n ? k->n_tok : n, i = 0;
    while (i < lim && k->tok[i] == tok[i]) i++;
    return i;
}

/* The kid sharing the most leading tokens with tok[0, n) (0 if none): its count in *common. */
static pc_node_t *best_kid(const pc_node_t *n, const int32_t *tok, int len, int *common) {
    pc_node_t *best = NULL;
    *common = 0;
    for (int i = 0; i < n->n_kids; i++) {
        int c = node_common(n->kids[i], tok, len);
        if (c > *common) best = n->kids[i], *common = c;
    }
    return best;
}

/* Row of layer l, position p (0..PREFIX_BLOCK) of a node. */
static float *node_row(const prefix_cache_t *pc, const pc_node_t *n, int l, int p) {   /* [width] */
    return n->rows + ((size_t)l * PREFIX_BLOCK + (size_t)p) * (size_t)pc->width;
}

/* Main hidden state of position p of a node. */
static float *node_hidden(const prefix_cache_t *pc, const pc_node_t *n, int p) {   /* [hidden] */
    return n->rows + (size_t)(pc->n_main + pc->n_mtp) * PREFIX_BLOCK * (size_t)pc->width + (size_t)p * pc->hidden;
}

/* Rows of positions [b0 + p0, b0 + p1) of layers [first, first + layers): node -> kv
 * (one copy per layer: both hold a layer's positions contiguously). */
static void rows_to_kv(const prefix_cache_t *pc, const pc_node_t *n, kv_cache_t *kv, int first, int layers, int b0,
                       int p0, int p1) {
    if (p1 <= p0) return;
    for (int l = first; l < first + layers; l++)
        memcpy(kv->rows[l] + (size_t)(b0 + p0) * (size_t)kv->width, node_row(pc, n, l, p0),
               sizeof(float) * (size_t)(p1 - p0) * (size_t)pc->width);
}

/* The same rows kv -> node. */
static void rows_from_kv(const prefix_cache_t *pc, pc_node_t *n, const kv_cache_t *kv, int first, int layers, int b0,
                         int p0, int p1) {
    if (p1 <= p0) return;
    for (int l = first; l < first + layers; l++)
        memcpy(node_row(pc, n, l, p0), kv->rows[l] + (size_t)(b0 + p0) * (size_t)kv->width,
               sizeof(float) * (size_t)(p1 - p0) * (size_t)pc->width);
}

/* The matched path for restore: nodes and how many leading positions of each
 * match. With MTP a restored position needs its MTP rows or, from the first
 * position without them on (the gap), its main hidden state (the caller
 * computes the MTP rows from it); the last matched position is recomputed. */
typedef struct pc_match {
    pc_node_t *node[4096];
    int take[4096];
    int depth, tokens, gap;   /* gap: first position without MTP rows (tokens if none) */
} pc_match_t;

/* Leading positions of kid usable with MTP, given whether the gap has begun. */
static int mtp_usable(const pc_node_t *kid, bool in_gap) {
    if (in_gap) return kid->hid_rows;
    return kid->hid_rows > kid->mtp_rows ? kid->hid_rows : kid->mtp_rows;
}

static void match_path(const prefix_cache_t *pc, const int32_t *tokens, int n, bool mtp, bool hidden, pc_match_t *mt) {
    const pc_node_t *node = &pc->root;
    mt->depth = mt->tokens = 0;
    mt->gap = -1;
    /* at most n-1 tokens: the last one's logits pick the first token */
    while (mt->tokens < n - 1 && mt->depth < 4096) {
        int c;
        pc_node_t *kid = best_kid(node, tokens + mt->tokens, n - 1 - mt->tokens, &c);
        if (!kid || c == 0) break;
        int usable = kid->n_tok;
        if (mtp) usable = hidden ? mtp_usable(kid, mt->gap >= 0) : mt->gap >= 0 ? 0 : kid->mtp_rows;
        if (c > usable + 1) c = usable + 1;   /* rows up to the last usable one's, + 1 (recomputed) */
        if (mtp && mt->gap < 0 && kid->mtp_rows < c) mt->gap = mt->tokens + kid->mtp_rows;
        mt->node[mt->depth] = kid;
        mt->take[mt->depth++] = c;
        mt->tokens += c;
        /* a partial match, or a block short of its last usable position: nothing can follow */
        if (c < PREFIX_BLOCK || usable < PREFIX_BLOCK) break;
        node = kid;
    }
    if (mt->gap < 0) mt->gap = mt->tokens;
}

/* Hidden states of positions [h0, h1) of the path into hidden (row p - h0). */
static void hidden_out(const prefix_cache_t *pc, const pc_match_t *mt, int h0, int h1, float *hidden) {
    for (int d = 0, b0 = 0; d < mt->depth; b0 += mt->take[d++])
        for (int p = b0 > h0 ? b0 : h0; p < b0 + mt->take[d] && p < h1; p++)
            memcpy(hidden + (size_t)(p - h0) * pc->hidden, node_hidden(pc, mt->node[d], p - b0),
                   sizeof(float) * (size_t)pc->hidden);
}

/* Leading matched positions whose hidden states the path holds. */
static int hidden_run(const pc_match_t *mt) {
    int run = 0;
    for (int d = 0; d < mt->depth; d++) {
        int h = mt->node[d]->hid_rows < mt->take[d] ? mt->node[d]->hid_rows : mt->take[d];
        run += h;
        if (h < mt->take[d]) break;
    }
    return run;
}

int prefix_cache_restore(prefix_cache_t *pc, const int32_t *tokens, int n, kv_cache_t *kv, int with_mtp) {
    int h0, h1;
    return prefix_cache_restore_hidden(pc, tokens, n, kv, with_mtp, NULL, &h0, &h1);
}

int prefix_cache_restore_hidden(prefix_cache_t *pc, const int32_t *tokens, int n, kv_cache_t *kv, int with_mtp,
                                float *hidden, int *h0, int *h1) {
    pc->st.lookups++;
    *h0 = *h1 = 0;
    bool mtp = with_mtp && pc->n_mtp > 0, hid = hidden && pc->hidden > 0;
    pc_match_t *mt = malloc(sizeof *mt);
    if (!mt) return 0;
    match_path(pc, tokens, n, mtp, hid, mt);
    int L = mt->tokens, keep = mtp ? L - 1 : L;   /* with MTP, h_{L-1} is needed: recompute row L-1 */
    if (keep <= 0) {
        free(mt);
        return 0;
    }
    int m0 = mtp ? (mt->gap < keep ? mt->gap : keep) : 0;   /* MTP rows restored: [0, m0) */
    for (int d = 0, b0 = 0; d < mt->depth; b0 += mt->take[d++]) {
        int p1 = keep - b0 < mt->take[d] ? keep - b0 : mt->take[d], q1 = m0 - b0 < p1 ? m0 - b0 : p1;
        rows_to_kv(pc, mt->node[d], kv, 0, pc->n_main, b0, 0, p1);
        if (q1 > 0) rows_to_kv(pc, mt->node[d], kv, pc->n_main, pc->n_mtp, b0, 0, q1);
        mt->node[d]->used = ++pc->tick;
    }
    if (hid) {
        *h0 = m0;
        *h1 = mtp ? keep : hidden_run(mt);
        if (*h1 > keep) *h1 = keep;
        if (*h1 > *h0) hidden_out(pc, mt, *h0, *h1, hidden);
        else *h1 = *h0;
    }
    free(mt);
    for (int l = 0; l < pc->n_main; l++) kv->len[l] = keep;
    for (int l = pc->n_main; l < pc->n_main + pc->n_mtp && l < kv->n_layers; l++) kv->len[l] = m0;
    pc->st.hits++;
    pc->st.hit_tokens += (uint64_t)keep;
    return keep;
}

/* Remove node (a leaf) from its parent and the LRU list. */
static void unlink_leaf(prefix_cache_t *pc, pc_node_t *n) {
    pc_node_t *p = n->parent;
    for (int i = 0; i < p->n_kids; i++)
        if (p->kids[i] == n) { p->kids[i] = p->kids[--p->n_kids]; break; }
    pc->all[n->slot] = pc->all[--pc->n_all];
    pc->all[n->slot]->slot = n->slot;
    node_free(pc, n);
    free(n);
    pc->st.bytes -= pc->node_bytes;
    pc->st.evicted_blocks++;
}

/* Evict least-recently-used leaves not used since `before` until one more node fits. */
static bool make_room(prefix_cache_t *pc, uint64_t before) {
    while (pc->st.bytes + pc->node_bytes > pc->st.max_bytes) {
        pc_node_t *victim = NULL;
        for (int i = 0; i < pc->n_all; i++) {
            pc_node_t *c = pc->all[i];
            if (c->n_kids == 0 && c->used < before && (!victim || c->used < victim->used)) victim = c;
        }
        if (!victim) return false;
        unlink_leaf(pc, victim);
    }
    return true;
}

static pc_node_t *add_kid(prefix_cache_t *pc, pc_node_t *parent, const int32_t *tok, int n_tok, uint64_t before) {
    if (!make_room(pc, before)) return NULL;
    pc_node_t *n = calloc(1, sizeof *n);
    if (!n || !(n->rows = rows_take(pc))) goto oom;
    if (parent->n_kids == parent->cap_kids) {
        int cap = parent->cap_kids ? 2 * parent->cap_kids : 4;
        pc_node_t **k = realloc(parent->kids, sizeof *k * (size_t)cap);
        if (!k) goto oom;
        parent->kids = k, parent->cap_kids = cap;
    }
    if (pc->n_all == pc->cap_all) {
        int cap = pc->cap_all ? 2 * pc->cap_all : 64;
        pc_node_t **a = realloc(pc->all, sizeof *a * (size_t)cap);
        if (!a) goto oom;
        pc->all = a, pc->cap_all = cap;
    }
    memcpy(n->tok, tok, sizeof(int32_t) * (size_t)n_tok);
    n->n_tok = n_tok;
    n->parent = parent;
    n->slot = pc->n_all;
    pc->all[pc->n_all++] = n;
    parent->kids[parent->n_kids++] = n;
    pc->st.bytes += pc->node_bytes;
    pc->st.inserted_blocks++;
    return n;
oom:
    if (n) node_free(pc, n);
    free(n);
    return NULL;
}

/* The node holding block tok[0, len) under parent: a kid holding at least
 * these tokens, else a partial leaf they extend (grown in place), else a new
 * kid. NULL when the budget is full of what this insert uses. */
static pc_node_t *block_node(prefix_cache_t *pc, pc_node_t *parent, const int32_t *tok, int len, const kv_cache_t *kv,
                             int b0, uint64_t start) {
    int c;
    pc_node_t *kid = best_kid(parent, tok, len, &c);
    if (kid && c == len) return kid;                        /* it holds them (and maybe more) */
    if (kid && c == kid->n_tok && kid->n_kids == 0) {       /* a shorter tail of the same tokens: extend it */
        memcpy(kid->tok + c, tok + c, sizeof(int32_t) * (size_t)(len - c));
        rows_from_kv(pc, kid, kv, 0, pc->n_main, b0, c, len);
        kid->n_tok = len;
        return kid;
    }
    if (!(kid = add_kid(pc, parent, tok, len, start))) return NULL;
    rows_from_kv(pc, kid, kv, 0, pc->n_main, b0, 0, len);
    return kid;
}

void prefix_cache_insert(prefix_cache_t *pc, const int32_t *tokens, int n, const kv_cache_t *kv, int mtp_rows) {
    prefix_cache_insert_hidden(pc, tokens, n, kv, mtp_rows, NULL, 0, 0);
}

/* Hidden states of positions [b0 + p0, b0 + p1): hidden (row = position) -> node. */
static void hidden_in(const prefix_cache_t *pc, pc_node_t *n, const float *hidden, int b0, int p0, int p1) {
    for (int p = p0; p < p1; p++)
        memcpy(node_hidden(pc, n, p), hidden + (size_t)(b0 + p) * pc->hidden, sizeof(float) * (size_t)pc->hidden);
}

void prefix_cache_insert_hidden(prefix_cache_t *pc, const int32_t *tokens, int n, const kv_cache_t *kv, int mtp_rows,
                                const float *hidden, int hid_from, int hid_to) {
    if (!hidden || pc->hidden == 0) hid_to = 0;
    int avail = n < kv->len[0] ? n : kv->len[0];
    uint64_t start = pc->tick + 1;   /* nodes touched by this insert are not evicted by it */
    pc_node_t *node = &pc->root;
    for (int b0 = 0; b0 < avail; b0 += PREFIX_BLOCK) {
        int len = avail - b0 < PREFIX_BLOCK ? avail - b0 : PREFIX_BLOCK;
        pc_node_t *kid = block_node(pc, node, tokens + b0, len, kv, b0, start);
        if (!kid) return;   /* full of what is in use */
        int want = mtp_rows - b0 < len ? mtp_rows - b0 : len;
        if (pc->n_mtp > 0 && want > kid->mtp_rows) {
            rows_from_kv(pc, kid, kv, pc->n_main, pc->n_mtp, b0, kid->mtp_rows, want);
            kid->mtp_rows = want;
        }
        int want_h = hid_to - b0 < len ? hid_to - b0 : len;
        if (want_h > kid->hid_rows && kid->hid_rows >= hid_from - b0) {   /* extends the node's leading run */
            hidden_in(pc, kid, hidden, b0, kid->hid_rows, want_h);
            kid->hid_rows = want_h;
        }
        kid->used = ++pc->tick;
        node = kid;
    }
}

prefix_cache_stats_t prefix_cache_stats(const prefix_cache_t *pc) { return pc->st; }
