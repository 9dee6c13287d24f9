/* layer_pipeline.c - see layer_pipeline.h: the two stages of a decoder layer
 * for one micro-batch, and the order in which micro-batches run them. */
#include "layer_pipeline.h"

#include <stdlib.h>

#include "core/clock.h"
#include "core/kernels.h"

typedef struct micro {          /* one micro-batch between a layer's two stages */
    float *h;                   /* [n, hidden] its rows of the residual stream (a view) */
    const mla_seq_t *seqs;      /* its shares of the step's sequences */
    int n_seqs, n;
    float *xn, *y, *shared;     /* [n, hidden] each: FFN input, FFN output, shared experts */
    int32_t *idx;               /* [n, k] routed experts */
    float *w;                   /* [n, k] gate weights */
    int ticket;                 /* the backend call in flight, -1: none */
    bool overlap;               /* shared experts (and the other micro-batch) run while the rows are away */
} micro_t;

static float *scratch(arena_t *a, size_t floats, spex_err_t *err) {
    float *p = arena_floats(a, floats);
    if (!p) spex_fail(err, "out of memory for %zu MB of scratch", floats * sizeof(float) >> 20);
    return p;
}

/* ---------------------------------------------------------------- stages */

/* The dense FFN: y = FFN(xn). */
static int dense_ffn(model_t *m, const decoder_layer_t *d, micro_t *mb, spex_err_t *err) {
    float *s = scratch(&m->scratch[MODEL_S_FFN], 2 * (size_t)mb->n * m->cfg.intermediate_size, err);
    if (!s) return -1;
    expert_forward(&m->ex, &d->dense, mb->xn, mb->y, mb->n, s);
    return 0;
}

/* Router, then the rows leave for the routed experts (y is written by end()). */
static int moe_begin(model_t *m, const decoder_layer_t *d, int layer, micro_t *mb, spex_err_t *err) {
    int n = mb->n, k = m->cfg.num_experts_per_tok;
    float *rs = scratch(&m->scratch[MODEL_S_FFN], (size_t)n * 2 * m->cfg.n_routed_experts, err);
    if (!rs) return -1;
    router_select(&m->ex, &d->router, mb->xn, n, mb->idx, mb->w, rs);
    if (m->balance && layer < m->cfg.num_hidden_layers) bias_balance_observe(m->balance, layer, mb->idx, n);
    if (!m->experts) return spex_fail(err, "layer %d: no backend for routed experts", layer);
    double t0 = spex_now();
    int rc = m->experts->begin(m->experts, layer, mb->xn, n, k, mb->idx, mb->w, mb->y, &mb->ticket, err);
    m->timing.routed += spex_now() - t0;
    if (rc) mb->ticket = -1;
    return rc ? spex_err_prefix(err, "layer %d: ", layer) : 0;
}

static int moe_end(model_t *m, int layer, micro_t *mb, spex_err_t *err) {
    double t0 = spex_now();
    int rc = m->experts->end(m->experts, mb->ticket, false, err);
    m->timing.routed += spex_now() - t0;
    mb->ticket = -1;
    return rc ? spex_err_prefix(err, "layer %d: ", layer) : 0;
}

/* pre: h += attn(norm(h)); xn = norm(h); dense FFN or router + begin. */
static int stage_pre(model_t *m, const decoder_layer_t *d, int layer, micro_t *mb, spex_err_t *err) {
    int hid = m->cfg.hidden_size;
    float eps = (float)m->cfg.rms_norm_eps;
    size_t len = (size_t)mb->n * hid;
    double t0 = spex_now();
    rmsnorm(mb->xn, mb->h, d->attn_norm, mb->n, hid, eps);
    if (mla_forward(&m->ex, &d->attn, &m->rope, layer, mb->seqs, mb->n_seqs, mb->xn, mb->y, &m->scratch[MODEL_S_ATTN],
                    err))
        return spex_err_prefix(err, "layer %d attention: ", layer);
    for (size_t i = 0; i < len; i++) mb->h[i] += mb->y[i];
    double t1 = spex_now(), routed0 = m->timing.routed;
    m->timing.attention += t1 - t0;
    rmsnorm(mb->xn, mb->h, d->ffn_norm, mb->n, hid, eps);
    int rc = d->moe ? moe_begin(m, d, layer, mb, err) : dense_ffn(m, d, mb, err);
    if (rc == 0 && d->moe && !mb->overlap) rc = moe_end(m, layer, mb, err);   /* no overlap: the old order */
    m->timing.ffn += spex_now() - t1 - (m->timing.routed - routed0);
    return rc;
}

/* post: shared experts while the rows are away, end(); h += routed + shared. */
static int stage_post(model_t *m, const decoder_layer_t *d, int layer, micro_t *mb, spex_err_t *err) {
    size_t len = (size_t)mb->n * m->cfg.hidden_size;
    double t0 = spex_now(), routed0 = m->timing.routed;
    if (d->moe && d->has_shared) {
        int inter = m->cfg.moe_intermediate_size * m->cfg.n_shared_experts;
        float *s = scratch(&m->scratch[MODEL_S_FFN], 2 * (size_t)mb->n * inter, err);
        if (!s) return -1;
        expert_forward(&m->ex, &d->shared, mb->xn, mb->shared, mb->n, s);
    }
    int rc = mb->ticket >= 0 ? moe_end(m, layer, mb, err) : 0;
    if (rc == 0 && d->moe && d->has_shared)
        for (size_t i = 0; i < len; i++) mb->y[i] += mb->shared[i];   /* routed + shared */
    m->timing.ffn += spex_now() - t0 - (m->timing.routed - routed0);
    if (rc) return rc;
    for (size_t i = 0; i < len; i++) mb->h[i] += mb->y[i];
    return 0;
}

/* ---------------------------------------------------------------- micro-batches */

bool layers_overlap(const model_t *m, int n) { return m->overlap_min_rows > 0 && n >= m->overlap_min_rows; }

int layers_micro_batches(const model_t *m, int n) { return layers_overlap(m, n) && n >= 2 ? 2 : 1; }

/* The sequences' shares of rows [first, first + count) into out; their number. */
static int split_seqs(const mla_seq_t *seqs, int n_seqs, int first, int count, mla_seq_t *out) {
    int row = 0, k = 0;
    for (int s = 0; s < n_seqs; s++) {
        int lo = row > first ? row : first, hi = row + seqs[s].n < first + count ? row + seqs[s].n : first + count;
        if (hi > lo) out[k++] = (mla_seq_t){seqs[s].kv, hi - lo};
        row += seqs[s].n;
    }
    return k;
}

/* Micro-batch j of `mbs` over h[n, hidden]: its rows, sequences and buffers. */
static int micro_init(model_t *m, micro_t *mb, int j, int mbs, float *h, const mla_seq_t *seqs, int n_seqs, int n,
                      spex_err_t *err) {
    int hid = m->cfg.hidden_size, k = m->cfg.num_experts_per_tok > 0 ? m->cfg.num_experts_per_tok : 1;
    int first = j == 0 ? 0 : (n + 1) / 2, count = mbs == 1 ? n : j == 0 ? (n + 1) / 2 : n - (n + 1) / 2;
    mla_seq_t *out = m->micro_seqs + (size_t)j * (n_seqs + 1);
    *mb = (micro_t){.h = h + (size_t)first * hid, .seqs = out, .n = count, .ticket = -1, .overlap = layers_overlap(m, n)};
    mb->n_seqs = split_seqs(seqs, n_seqs, first, count, out);
    float *b = scratch(&m->micro[j], (size_t)count * (3 * (size_t)hid + 2 * (size_t)k), err);
    if (!b) return -1;
    mb->xn = b, mb->y = b + (size_t)count * hid, mb->shared = mb->y + (size_t)count * hid;
    mb->idx = (int32_t *)(mb->shared + (size_t)count * hid);
    mb->w = (float *)mb->idx + (size_t)count * k;
    return 0;
}

/* Room for every micro-batch's share of the sequences (grow-only). */
static int reserve_seqs(model_t *m, int n_seqs, spex_err_t *err) {
    int need = MOE_MAX_INFLIGHT * (n_seqs + 1);
    if (need <= m->micro_seqs_cap) return 0;
    mla_seq_t *p = realloc(m->micro_seqs, sizeof *p * (size_t)need);
    if (!p) return spex_fail(err, "out of memory for %d sequences", n_seqs);
    m->micro_seqs = p;
    m->micro_seqs_cap = need;
    return 0;
}

/* After a failure: collect every call still in flight, so nothing of this
 * step arrives during the next one. */
static void abandon(model_t *m, micro_t *mbs, int count) {
    for (int j = 0; j < count; j++)
        if (mbs[j].ticket >= 0) {
            m->experts->end(m->experts, mbs[j].ticket, true, NULL);
            mbs[j].ticket = -1;
        }
}

/* Between stages: let the calls still away move (a large combine is pulled
 * only while the coordinator is inside the link). */
static void poll_inflight(model_t *m, const micro_t *mbs, int count) {
    for (int j = 0; j < count; j++)
        if (mbs[j].ticket >= 0 && m->experts->progress) {
            m->experts->progress(m->experts);
            return;
        }
}

int layers_forward(model_t *m, const decoder_layer_t *layers, int first, int count, float *h, const mla_seq_t *seqs,
                   int n_seqs, int n, spex_err_t *err) {
    micro_t mb[MOE_MAX_INFLIGHT];
    int mbs = layers_micro_batches(m, n), rc = reserve_seqs(m, n_seqs, err);
    for (int j = 0; j < mbs && !rc; j++) rc = micro_init(m, &mb[j], j, mbs, h, seqs, n_seqs, n, err);
    if (rc || count <= 0) return rc;
    for (int j = 0; j < mbs && !rc; j++) {
        rc = stage_pre(m, &layers[0], first, &mb[j], err);
        poll_inflight(m, mb, mbs);
    }
    for (int i = 0; i < count && !rc; i++)
        for (int j = 0; j < mbs && !rc; j++) {
            rc = stage_post(m, &layers[i], first + i, &mb[j], err);
            poll_inflight(m, mb, mbs);
            if (!rc && i + 1 < count) rc = stage_pre(m, &layers[i + 1], first + i + 1, &mb[j], err);
            poll_inflight(m, mb, mbs);
        }
    if (rc) abandon(m, mb, mbs);
    return rc;
}
