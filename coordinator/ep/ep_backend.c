/* ep_backend.c - see ep_backend.h. Per call: begin (group -> encode ->
 * dispatch), end (await -> decode -> sum); routed() is the two back to back.
 * The messages themselves are ep_protocol.c's. */
#include "ep_backend.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "coordinator/ep/ep_protocol.h"

typedef struct rank_batch {        /* one rank's share of the current layer call */
    int *rows;                     /* [n_rows] token rows sent (ascending) */
    uint32_t *counts;              /* [n_rows] its experts per row */
    uint32_t *experts;             /* [n_pairs] */
    float *weights;                /* [n_pairs] */
    int n_rows, n_pairs, cap;      /* cap >= rows and pairs of a call */
    float *vec;                    /* decoded combine vectors [n_vec, hidden] */
    size_t vec_cap;
    int n_vec, cursor;
} rank_batch_t;

typedef struct ep_call {          /* a begun call, until its end() */
    bool busy;
    int proto_call;                /* its ep_protocol call */
    int layer, n, k;
    unsigned rotate;               /* replica choice offset: placement_pick(row + rotate) */
    const int32_t *idx;            /* [n, k], the caller's until end() */
    float *out;                    /* [n, hidden], the caller's */
    rank_batch_t *rb;              /* [world]: its share per rank */
    double t_begin, t_sent;        /* begin() entered; every dispatch frame sent */
    double expert;                 /* slowest rank's compute */
    double t_decode;               /* decoding combines during the wait */
} ep_call_t;

_Static_assert(EP_PROTOCOL_MAX_CALLS >= MOE_MAX_INFLIGHT, "the protocol must carry every call in flight");

typedef struct ep_backend {
    moe_backend_t base;            /* must be first */
    spex_config_t cfg;
    int n_layers, n_experts, hidden, world;
    uint64_t model_id;
    placement_t *pl;
    ep_protocol_t *proto;          /* the messages to and from the workers */
    ep_options_t o;
    ep_stats_t *st;
    ep_call_t call[MOE_MAX_INFLIGHT];
    int in_flight;                 /* calls begun, not ended */
    unsigned *layer_calls;         /* [n_layers] calls begun per layer: rotates replicas from step to step */
    double t_last_in;              /* when the last ended call's answers were all in */
    codec_ctx_t *ctx;
    float *xbuf;                   /* gathered rows of one rank */
    size_t xbuf_cap;
    void (*cleanup)(void *);
    void *cleanup_user;
} ep_backend_t;

static void *grow(void *p, size_t *cap, size_t need) {
    if (need <= *cap) return p;
    size_t c = need + need / 2 + 64;
    void *np = realloc(p, c);
    if (!np) return NULL;
    *cap = c;
    return np;
}

/* ---------------------------------------------------------------- dispatch */

static int batch_reserve(rank_batch_t *r, int need) {
    if (need <= r->cap) return 0;
    int cap = need + 16;
    int *rows = realloc(r->rows, sizeof(int) * (size_t)cap);
    if (rows) r->rows = rows;
    uint32_t *counts = realloc(r->counts, sizeof(uint32_t) * (size_t)cap);
    if (counts) r->counts = counts;
    uint32_t *ex = realloc(r->experts, sizeof(uint32_t) * (size_t)cap);
    if (ex) r->experts = ex;
    float *w = realloc(r->weights, sizeof(float) * (size_t)cap);
    if (w) r->weights = w;
    if (!rows || !counts || !ex || !w) return -1;
    r->cap = cap;
    return 0;
}

/* Sort the (row, expert) pairs of the call into per-rank batches; count load. */
static int group_rows(ep_backend_t *b, ep_call_t *cl, int layer, int n, int k, const int32_t *idx, const float *w,
                      spex_err_t *err) {
    for (int r = 1; r < b->world; r++) {
        cl->rb[r].n_rows = cl->rb[r].n_pairs = 0;
        if (batch_reserve(&cl->rb[r], n * k)) return spex_fail(err, "out of memory for %d rows", n);
    }
    int64_t *tokens = b->st->tokens + (size_t)layer * b->n_experts;
    int64_t *rank_pairs = b->st->rank_pairs + (size_t)layer * b->world;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < k; j++) {
            int e = idx[(size_t)i * k + j];
            if (e < 0 || e >= b->n_experts) return spex_fail(err, "row %d: expert id %d out of range", i, e);
            int r = placement_pick(b->pl, layer, e, (unsigned)i + cl->rotate);
            rank_pairs[r]++;
            rank_batch_t *rb = &cl->rb[r];
            if (rb->n_rows == 0 || rb->rows[rb->n_rows - 1] != i) {
                rb->rows[rb->n_rows] = i;
                rb->counts[rb->n_rows++] = 0;
            }
            rb->counts[rb->n_rows - 1]++;
            rb->experts[rb->n_pairs] = (uint32_t)e;
            rb->weights[rb->n_pairs++] = w[(size_t)i * k + j];
            tokens[e]++;
        }
    return 0;
}

typedef struct fill_ctx {
    ep_backend_t *b;
    const rank_batch_t *rb;
    const float *x;
} fill_ctx_t;

/* Gather rank r's rows and encode them with the dispatch codec straight into
 * the frame (ep_fill_fn). */
static int encode_rows(void *user, uint8_t *dst, size_t cap, size_t *len, spex_err_t *err) {
    fill_ctx_t *c = user;
    ep_backend_t *b = c->b;
    size_t rowb = sizeof(float) * (size_t)b->hidden;
    if (!(b->xbuf = grow(b->xbuf, &b->xbuf_cap, rowb * c->rb->n_rows))) return spex_fail(err, "out of memory");
    for (int i = 0; i < c->rb->n_rows; i++)
        memcpy(b->xbuf + (size_t)i * b->hidden, c->x + (size_t)c->rb->rows[i] * b->hidden, rowb);
    return codec_encode(&b->o.dispatch, b->xbuf, c->rb->n_rows, b->hidden, dst, cap, len, b->ctx, err);
}

static int send_dispatch(ep_backend_t *b, ep_call_t *cl, int r, const float *x, spex_err_t *err) {
    rank_batch_t *rb = &cl->rb[r];
    int layer = cl->layer;
    size_t frame = 0;
    ep_rows_t rows = {.layer = layer, .rows = rb->n_rows, .pairs = rb->n_pairs, .counts = rb->counts,
                      .experts = rb->experts, .weights = rb->weights};
    fill_ctx_t fc = {b, rb, x};
    size_t cap = codec_max_encoded(&b->o.dispatch, rb->n_rows, b->hidden);
    if (ep_protocol_dispatch(b->proto, cl->proto_call, r, &rows, cap, encode_rows, &fc, &frame, err)) return -1;
    ep_rank_stats_t *rs = &b->st->rank[r];
    ep_layer_stats_t *ls = &b->st->layer[layer];
    int64_t raw = (int64_t)(sizeof(float) * (size_t)b->hidden * rb->n_rows);
    rs->rows += rb->n_rows;
    rs->pairs += rb->n_pairs;
    rs->dispatch.messages++, rs->dispatch.raw_bytes += raw, rs->dispatch.wire_bytes += (int64_t)frame;
    ls->dispatch.messages++, ls->dispatch.raw_bytes += raw, ls->dispatch.wire_bytes += (int64_t)frame;
    return 0;
}

/* ---------------------------------------------------------------- combine */

static void count_combine(ep_backend_t *b, ep_call_t *cl, int src, const Spex__Combine *c, int vectors,
                          size_t frame_len) {
    ep_rank_stats_t *rs = &b->st->rank[src];
    ep_layer_stats_t *ls = &b->st->layer[c->layer];
    int64_t raw = (int64_t)sizeof(float) * vectors * b->hidden;
    rs->combine.messages++, rs->combine.raw_bytes += raw, rs->combine.wire_bytes += (int64_t)frame_len;
    ls->combine.messages++, ls->combine.raw_bytes += raw, ls->combine.wire_bytes += (int64_t)frame_len;
    rs->t_decode += c->decode_seconds;
    rs->t_compute += c->compute_seconds;
    rs->t_encode += c->encode_seconds;
    if (c->compute_seconds > cl->expert) cl->expert = c->compute_seconds;   /* slowest rank */
}

typedef struct combine_ctx {
    ep_backend_t *b;
    ep_call_t *cl;
} combine_ctx_t;

/* Index of the first NaN or infinity in v[n], or n. */
static size_t first_nonfinite(const float *v, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i])) return i;
    return n;
}

/* A rank's answer with NaN or infinity would silently become garbage text:
 * name the rank, layer and vector (its expert in expert mode) instead. */
static int check_finite(const ep_backend_t *b, int src, const Spex__Combine *c, const rank_batch_t *rb, spex_err_t *err) {
    size_t n = (size_t)rb->n_vec * b->hidden, i = first_nonfinite(rb->vec, n);
    if (i == n) return 0;
    size_t v = i / (size_t)b->hidden;
    char where[64];
    if (b->o.mode == EP_COMBINE_EXPERT) snprintf(where, sizeof where, "expert %u", rb->experts[v]);
    else snprintf(where, sizeof where, "token row %d", rb->rows[v]);
    return spex_fail(err, "rank %d returned a non-finite value (%g) for layer %u, %s: its expert weights or inputs "
                     "are corrupt", src, (double)rb->vec[i], c->layer, where);
}

/* A checked combine (ep_protocol.h): decode its vectors for sum_rows. */
static int on_combine(void *user, int src, const Spex__Combine *c, const uint8_t *pl, size_t plen, size_t frame_len,
                      spex_err_t *err) {
    combine_ctx_t *x = user;
    ep_backend_t *b = x->b;
    rank_batch_t *rb = &x->cl->rb[src];
    double t0 = spex_now();
    int n = (int)c->vectors;
    if (!(rb->vec = grow(rb->vec, &rb->vec_cap, sizeof(float) * (size_t)n * b->hidden + 1)))
        return spex_fail(err, "out of memory");
    if (codec_decode(&b->o.combine, pl, plen, n, b->hidden, rb->vec, b->ctx, err))
        return spex_err_prefix(err, "rank %d: combine: ", src);
    rb->n_vec = n;
    rb->cursor = 0;
    count_combine(b, x->cl, src, c, n, frame_len);
    x->cl->t_decode += spex_now() - t0;
    return check_finite(b, src, c, rb, err);
}

/* out[n, hidden] from the decoded vectors (see ep_backend.h for the orders). */
static void sum_rows(ep_backend_t *b, const ep_call_t *cl, int n, int k, const int32_t *idx, float *out) {
    int hid = b->hidden;
    memset(out, 0, sizeof(float) * (size_t)n * hid);
    if (b->o.mode == EP_COMBINE_EXPERT) {
        for (int i = 0; i < n; i++) {
            float *o = out + (size_t)i * hid;
            for (int j = 0; j < k; j++) {
                rank_batch_t *rb = &cl->rb[placement_pick(b->pl, cl->layer, idx[(size_t)i * k + j], (unsigned)i + cl->rotate)];
                const float *v = rb->vec + (size_t)rb->cursor++ * hid;
                for (int c = 0; c < hid; c++) o[c] += v[c];
            }
        }
        return;
    }
    for (int r = 1; r < b->world; r++) {
        const rank_batch_t *rb = &cl->rb[r];
        for (int p = 0; p < rb->n_rows; p++) {
            float *o = out + (size_t)rb->rows[p] * hid;
            const float *v = rb->vec + (size_t)p * hid;
            for (int c = 0; c < hid; c++) o[c] += v[c];
        }
    }
}

/* ---------------------------------------------------------------- backend */

static int ep_end(moe_backend_t *self, int ticket, bool out_discard, spex_err_t *err);

static ep_call_t *free_call(ep_backend_t *b, int *ticket) {
    for (int i = 0; i < MOE_MAX_INFLIGHT; i++)
        if (!b->call[i].busy) {
            *ticket = i;
            return &b->call[i];
        }
    return NULL;
}

static int ep_begin(moe_backend_t *self, int layer, const float *x, int n, int k, const int32_t *idx, const float *w,
                    float *out, int *ticket, spex_err_t *err) {
    ep_backend_t *b = (ep_backend_t *)self;
    const char *failure = ep_protocol_failure(b->proto, NULL, NULL);
    if (failure) return spex_fail(err, "expert parallelism: a worker rank failed earlier: %s", failure);
    if (layer < 0 || layer >= b->n_layers || !config_layer_is_moe(&b->cfg, layer))
        return spex_fail(err, "experts: layer %d has no routed experts", layer);
    ep_call_t *cl = free_call(b, ticket);
    if (!cl) return spex_fail(err, "experts: more than %d calls in flight", MOE_MAX_INFLIGHT);
    /* Replicas hold the same weights, so which one computes a (row, expert) changes no bit in the
     * expert combine; rotating the choice per call spreads a hot expert's single row (batch 1)
     * over its replicas from step to step. The count is per layer: one count over all calls
     * advances by the number of MoE layers per step, and a step of 3 MoE layers would pin an
     * expert with 3 replicas to one of them in each layer. Pre-summed combines add a rank's
     * experts together, so there the choice stays a function of the row alone. */
    unsigned rotate = b->o.mode == EP_COMBINE_EXPERT ? b->layer_calls[layer]++ : 0;
    *cl = (ep_call_t){.rb = cl->rb, .layer = layer, .n = n, .k = k, .rotate = rotate, .idx = idx, .out = out,
                      .t_begin = spex_now()};
    if (group_rows(b, cl, layer, n, k, idx, w, err)) return -1;
    if ((cl->proto_call = ep_protocol_call_open(b->proto, layer, err)) < 0) return -1;
    cl->busy = true;
    b->in_flight++;
    for (int r = 1; r < b->world; r++)
        if (cl->rb[r].n_rows > 0 && send_dispatch(b, cl, r, x, err)) {
            ep_end(self, *ticket, true, NULL);   /* collect what was sent: nothing stays in flight */
            return -1;
        }
    cl->t_sent = spex_now();
    if (b->in_flight > b->st->overlap.micro_batches) b->st->overlap.micro_batches = b->in_flight;
    return 0;
}

/* Statistics of a finished call; t_end: its answers are summed. */
static void count_call(ep_backend_t *b, const ep_call_t *cl, double t_wait, double t_end) {
    ep_layer_stats_t *ls = &b->st->layer[cl->layer];
    ls->calls++;
    ls->rows += cl->n;
    ls->pairs += (int64_t)cl->n * cl->k;
    ls->t_dispatch += cl->t_sent - cl->t_begin;
    ls->t_wait += t_wait;
    ls->t_expert += cl->expert;
    /* The rows are away from the last frame sent (or, if later, from when the
     * previous call's answers were in: a worker serves calls in turn) to the
     * last answer in, decoding excluded; what of it the coordinator did not
     * spend blocked on the link was hidden. In-process workers run inside the
     * wait: nothing is hidden. */
    double start = cl->t_sent > b->t_last_in ? cl->t_sent : b->t_last_in;
    double comm = t_end - start - cl->t_decode, hidden = comm - t_wait;
    if (ep_protocol_in_process(b->proto)) comm = t_wait, hidden = 0;
    b->t_last_in = t_end;
    ep_overlap_t *o = &b->st->overlap;
    o->calls++;
    o->comm_seconds += comm > 0 ? comm : 0;
    o->hidden_seconds += hidden > 0 ? hidden : 0;
    b->st->t_end = t_end;
}

static int ep_end(moe_backend_t *self, int ticket, bool out_discard, spex_err_t *err) {
    ep_backend_t *b = (ep_backend_t *)self;
    if (ticket < 0 || ticket >= MOE_MAX_INFLIGHT || !b->call[ticket].busy)
        return spex_fail(err, "experts: no call %d in flight", ticket);
    ep_call_t *cl = &b->call[ticket];
    double t0 = spex_now(), t_wait = 0;
    combine_ctx_t x = {b, cl};
    int rc = ep_protocol_await_combine(b->proto, cl->proto_call, on_combine, &x, &t_wait, err);
    double t1 = spex_now();
    cl->busy = false;
    b->in_flight--;
    if (rc || out_discard) return rc;
    sum_rows(b, cl, cl->n, cl->k, cl->idx, cl->out);
    double t2 = spex_now();
    b->st->layer[cl->layer].t_combine += t2 - t0 - t_wait;
    count_call(b, cl, t_wait, t1);
    b->st->t_end = t2;
    return 0;
}

static int ep_routed(moe_backend_t *self, int layer, const float *x, int n, int k, const int32_t *idx,
                     const float *w, float *out, spex_err_t *err) {
    int ticket;
    if (ep_begin(self, layer, x, n, k, idx, w, out, &ticket, err)) return -1;
    return ep_end(self, ticket, false, err);
}

static void ep_destroy(moe_backend_t *self) {
    ep_backend_t *b = (ep_backend_t *)self;
    if (!b) return;
    ep_protocol_free(b->proto);   /* bye, then the link goes */
    if (b->cleanup) b->cleanup(b->cleanup_user);
    for (int i = 0; i < MOE_MAX_INFLIGHT; i++) {
        rank_batch_t *rb = b->call[i].rb;
        for (int r = 0; rb && r < b->world; r++) {
            free(rb[r].rows);
            free(rb[r].counts);
            free(rb[r].experts);
            free(rb[r].weights);
            free(rb[r].vec);
        }
        free(rb);
    }
    free(b->xbuf);
    free(b->layer_calls);
    codec_ctx_free(b->ctx);
    ep_stats_free(b->st);
    placement_free(b->pl);
    free(b);
}

/* Codec names, statistics and per-rank batches for a checked placement. */
static int ep_prepare(ep_backend_t *b, spex_err_t *err) {
    if (b->pl->n_experts != b->n_experts || b->pl->world != b->world)
        return spex_fail(err, "placement for %d experts on %d ranks, but the model has %d experts and the job %d ranks",
                         b->pl->n_experts, b->pl->world, b->n_experts, b->world);
    if (placement_max_layer(b->pl) >= b->n_layers)
        return spex_fail(err, "placement has a table for layer %d, but the model has %d layers (MTP included)",
                         placement_max_layer(b->pl), b->n_layers);
    if (!(b->layer_calls = calloc((size_t)b->n_layers, sizeof *b->layer_calls))) return spex_fail(err, "out of memory");
    for (int i = 0; i < MOE_MAX_INFLIGHT; i++)
        if (!(b->call[i].rb = calloc((size_t)b->world, sizeof *b->call[i].rb))) return spex_fail(err, "out of memory");
    if (!(b->ctx = codec_ctx_create(err)) ||
        !(b->st = ep_stats_create(b->n_layers, b->n_experts, b->world, err)))
        return spex_fail(err, "out of memory");
    codec_name(&b->o.dispatch, b->st->dispatch_codec, sizeof b->st->dispatch_codec);
    codec_name(&b->o.combine, b->st->combine_codec, sizeof b->st->combine_codec);
    snprintf(b->st->combine_mode, sizeof b->st->combine_mode, "%s", b->o.mode == EP_COMBINE_EXPERT ? "expert" : "presum");
    return 0;
}

static void ep_progress(moe_backend_t *self) { ep_protocol_poll(((ep_backend_t *)self)->proto); }

static int ep_hello(ep_backend_t *b, spex_err_t *err) {
    ep_hello_t h = {.model_id = b->model_id, .n_layers = b->n_layers, .n_routed = b->n_experts, .hidden = b->hidden,
                    .dispatch_codec = b->st->dispatch_codec, .combine_codec = b->st->combine_codec,
                    .combine = b->o.mode == EP_COMBINE_EXPERT ? SPEX__COMBINE_MODE__COMBINE_EXPERT
                                                              : SPEX__COMBINE_MODE__COMBINE_PRESUM,
                    .pl = b->pl, .expert_digests = b->o.expert_digests};
    b->o.expert_digests = NULL;   /* the caller's, valid only during create */
    if (ep_protocol_hello(b->proto, &h, b->st, err)) return -1;
    b->st->t_begin = b->st->t_end = spex_now();
    return 0;
}

moe_backend_t *ep_backend_create(const spex_config_t *cfg, uint64_t model_id, placement_t *pl, link_t *link,
                                 const ep_options_t *o, void (*cleanup)(void *), void *cleanup_user,
                                 spex_err_t *err) {
    ep_backend_t *b = calloc(1, sizeof *b);
    ep_protocol_t *proto = link ? ep_protocol_create(link, o->rank_timeout, err) : NULL;
    if (!b || !proto || !pl) {
        if (!b || (link && !proto)) spex_fail(err, "out of memory");
        else spex_fail(err, "expert parallelism: no placement or link");
        ep_protocol_free(proto);
        if (cleanup) cleanup(cleanup_user);
        placement_free(pl);
        free(b);
        return NULL;
    }
    b->base.routed = ep_routed;
    b->base.begin = ep_begin;
    b->base.end = ep_end;
    b->base.progress = ep_progress;
    b->base.destroy = ep_destroy;
    b->cfg = *cfg;
    b->pl = pl, b->proto = proto, b->o = *o, b->model_id = model_id;
    b->cleanup = cleanup, b->cleanup_user = cleanup_user;
    b->n_layers = cfg->num_hidden_layers + cfg->num_nextn_predict_layers;
    b->n_experts = cfg->n_routed_experts;
    b->hidden = cfg->hidden_size;
    b->world = ep_protocol_world(proto);
    if (ep_prepare(b, err) || ep_hello(b, err)) {
        ep_destroy(&b->base);
        return NULL;
    }
    return &b->base;
}

const char *ep_backend_failure(moe_backend_t *self, int *rank, const char **cause) {
    return ep_backend_stats(self) ? ep_protocol_failure(((ep_backend_t *)self)->proto, rank, cause) : NULL;
}

ep_stats_t *ep_backend_stats(moe_backend_t *self) {
    return self && self->routed == ep_routed ? ((ep_backend_t *)self)->st : NULL;
}

int ep_backend_fetch_worker_stats(moe_backend_t *self, spex_err_t *err) {
    ep_backend_t *b = (ep_backend_t *)self;
    if (!ep_backend_stats(self)) return spex_fail(err, "not an expert-parallel backend");
    double t_end = b->st->t_end;
    int rc = ep_protocol_fetch_stats(b->proto, b->st, err);
    b->st->t_end = t_end;
    return rc;
}
