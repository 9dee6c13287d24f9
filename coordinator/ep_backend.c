/* ep_backend.c - see ep_backend.h. Per call: group -> dispatch -> await -> sum. */
#include "ep_backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transport/wire.h"

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

typedef struct ep_backend {
    moe_backend_t base;            /* must be first */
    spex_config_t cfg;
    int n_layers, n_experts, hidden, world;
    uint64_t model_id, step;
    placement_t *pl;
    link_t *link;
    ep_options_t o;
    char dname[32], cname[32];
    ep_stats_t *st;
    rank_batch_t *rb;              /* [world] */
    bool *pending;                 /* [world] */
    double *deadline;              /* [world] */
    codec_ctx_t *ctx;
    float *xbuf;                   /* gathered rows of one rank */
    size_t xbuf_cap;
    uint8_t *ebuf;
    size_t ebuf_cap;
    bool broken;                   /* a rank failed: no goodbyes, the job ends */
    void (*cleanup)(void *);
    void *cleanup_user;
    double call_expert;            /* slowest rank's compute in the current call */
} ep_backend_t;

typedef int (*reply_fn)(ep_backend_t *b, int src, const wire_header_t *h, const uint8_t *pl, size_t plen,
                        spex_err_t *err);

static void *grow(void *p, size_t *cap, size_t need) {
    if (need <= *cap) return p;
    size_t c = need + need / 2 + 64;
    void *np = realloc(p, c);
    if (!np) return NULL;
    *cap = c;
    return np;
}

/* ---------------------------------------------------------------- waiting */

static void pending_list(const ep_backend_t *b, bool expired_only, char *out, size_t cap) {
    size_t off = 0;
    double now = link_now();
    out[0] = 0;
    for (int r = 1; r < b->world && off + 16 < cap; r++)
        if (b->pending[r] && (!expired_only || now >= b->deadline[r]))
            off += (size_t)snprintf(out + off, cap - off, "%s%d", off ? ", " : "", r);
}

/* Wait until no rank is pending; fn handles each rank's reply (same step and
 * body). "loading" messages extend a rank's deadline. Every failure names the
 * rank and marks the backend broken. *t_wait += time spent in recv. */
static int await_replies(ep_backend_t *b, uint64_t step, int body, const char *what, reply_fn fn, double *t_wait,
                         spex_err_t *err) {
    for (int r = 1; r < b->world; r++) b->deadline[r] = link_now() + b->o.rank_timeout;
    int rc = 0;
    for (;;) {
        double dl = 1e300;
        int left = 0;
        for (int r = 1; r < b->world; r++)
            if (b->pending[r]) { left++; dl = b->deadline[r] < dl ? b->deadline[r] : dl; }
        if (!left) return 0;
        uint8_t *buf = NULL;
        size_t len = 0;
        int src = -1;
        double t0 = link_now();
        rc = b->link->recv(b->link, LINK_ANY, dl, &src, &buf, &len, err);
        *t_wait += link_now() - t0;
        if (rc == 1) {
            char ranks[256];
            pending_list(b, true, ranks, sizeof ranks);
            if (!ranks[0]) continue;   /* the loopback returns at once; deadlines not all passed */
            rc = spex_fail(err, "rank %s did not answer the %s within %.0f s (dead or stuck)", ranks, what,
                           b->o.rank_timeout);
            break;
        }
        if (rc) break;
        wire_header_t *h = NULL;
        const uint8_t *pl;
        size_t plen;
        if ((rc = wire_unpack(buf, len, src, &h, &pl, &plen, err)) == 0) {
            if (h->body_case == SPEX__HEADER__BODY_LOADING) b->deadline[src] = link_now() + b->o.rank_timeout;
            else if (h->body_case == SPEX__HEADER__BODY_ERROR)
                rc = spex_fail(err, "%s (answering the %s)", h->error->message, what);
            else if (!b->pending[src] || h->step != step || (int)h->body_case != body)
                rc = spex_fail(err, "rank %d: unexpected %s message (step %llu) while waiting for the %s", src,
                               wire_body_name(h), (unsigned long long)h->step, what);
            else if ((rc = fn(b, src, h, pl, plen, err)) == 0) {
                b->pending[src] = false;
                if (body == SPEX__HEADER__BODY_COMBINE) {
                    b->st->rank[src].combine.wire_bytes += (int64_t)len;
                    b->st->layer[h->combine->layer].combine.wire_bytes += (int64_t)len;
                }
            }
        }
        wire_header_free(h);
        free(buf);
        if (rc) break;
    }
    b->broken = true;
    return -1;
}

static int send_frame(ep_backend_t *b, int rank, const wire_header_t *h, const uint8_t *pl, size_t plen,
                      size_t *frame_len, spex_err_t *err) {
    uint8_t *buf;
    size_t len;
    if (wire_pack(h, pl, plen, &buf, &len, err)) return -1;
    if (frame_len) *frame_len = len;
    if (b->link->send(b->link, rank, buf, len, err)) {
        b->broken = true;
        return spex_err_prefix(err, "rank %d: ", rank);
    }
    return 0;
}

/* ---------------------------------------------------------------- handshake */

static int on_ack(ep_backend_t *b, int src, const wire_header_t *h, const uint8_t *pl, size_t plen, spex_err_t *err) {
    (void)pl, (void)plen;
    const Spex__HelloAck *a = h->hello_ack;
    if (!a->ok)
        return spex_fail(err, "%srank %d refused the session: %s", b->link->in_process ? "in-process expert " : "", src,
                         a->reason);
    if (a->model_id != b->model_id) return spex_fail(err, "rank %d acknowledged another model identity", src);
    b->st->rank[src].weight_bytes = (int64_t)a->weight_bytes;
    return 0;
}

static int handshake(ep_backend_t *b, spex_err_t *err) {
    int *ex = malloc(sizeof(int) * (size_t)b->n_experts);
    uint32_t *ids = malloc(sizeof(uint32_t) * (size_t)b->n_experts);
    int rc = 0;
    if (!ex || !ids) rc = spex_fail(err, "out of memory");
    for (int r = 1; r < b->world && !rc; r++) {
        int n = placement_rank_experts(b->pl, r, ex);
        for (int i = 0; i < n; i++) ids[i] = (uint32_t)ex[i];
        b->st->rank[r].experts_hosted = n;
        Spex__Header h = SPEX__HEADER__INIT;
        Spex__Hello m = SPEX__HELLO__INIT;
        m.model_id = b->model_id;
        m.rank = (uint32_t)r;
        m.world = (uint32_t)b->world;
        m.n_layers = (uint32_t)b->n_layers;
        m.n_routed = (uint32_t)b->n_experts;
        m.hidden = (uint32_t)b->hidden;
        m.n_experts = (size_t)n;
        m.experts = ids;
        m.dispatch_codec = b->dname;
        m.combine_codec = b->cname;
        m.combine = b->o.mode == EP_COMBINE_EXPERT ? SPEX__COMBINE_MODE__COMBINE_EXPERT
                                                   : SPEX__COMBINE_MODE__COMBINE_PRESUM;
        h.step = b->step;
        h.body_case = SPEX__HEADER__BODY_HELLO;
        h.hello = &m;
        rc = send_frame(b, r, &h, NULL, 0, NULL, err);
        b->pending[r] = true;
    }
    free(ex);
    free(ids);
    double tw = 0;
    if (!rc) rc = await_replies(b, b->step, SPEX__HEADER__BODY_HELLO_ACK, "hello", on_ack, &tw, err);
    b->step++;
    return rc;
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
static int group_rows(ep_backend_t *b, int layer, int n, int k, const int32_t *idx, const float *w, spex_err_t *err) {
    for (int r = 1; r < b->world; r++) {
        b->rb[r].n_rows = b->rb[r].n_pairs = 0;
        if (batch_reserve(&b->rb[r], n * k)) return spex_fail(err, "out of memory for %d rows", n);
    }
    int64_t *tokens = b->st->tokens + (size_t)layer * b->n_experts;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < k; j++) {
            int e = idx[(size_t)i * k + j];
            if (e < 0 || e >= b->n_experts) return spex_fail(err, "row %d: expert id %d out of range", i, e);
            rank_batch_t *rb = &b->rb[placement_pick(b->pl, e, i)];
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

static int send_dispatch(ep_backend_t *b, int r, int layer, const float *x, spex_err_t *err) {
    rank_batch_t *rb = &b->rb[r];
    size_t rowb = sizeof(float) * (size_t)b->hidden;
    size_t ecap = codec_max_encoded(&b->o.dispatch, rb->n_rows, b->hidden);
    if (!(b->xbuf = grow(b->xbuf, &b->xbuf_cap, rowb * rb->n_rows)) || !(b->ebuf = grow(b->ebuf, &b->ebuf_cap, ecap)))
        return spex_fail(err, "out of memory");
    for (int i = 0; i < rb->n_rows; i++) memcpy(b->xbuf + (size_t)i * b->hidden, x + (size_t)rb->rows[i] * b->hidden, rowb);
    size_t len = 0, frame = 0;
    if (codec_encode(&b->o.dispatch, b->xbuf, rb->n_rows, b->hidden, b->ebuf, b->ebuf_cap, &len, b->ctx, err))
        return -1;
    Spex__Header h = SPEX__HEADER__INIT;
    Spex__Dispatch d = SPEX__DISPATCH__INIT;
    d.layer = (uint32_t)layer;
    d.rows = (uint32_t)rb->n_rows;
    d.n_counts = (size_t)rb->n_rows;
    d.counts = rb->counts;
    d.n_experts = d.n_weights = (size_t)rb->n_pairs;
    d.experts = rb->experts;
    d.weights = rb->weights;
    d.codec = b->dname;
    d.combine = b->o.mode == EP_COMBINE_EXPERT ? SPEX__COMBINE_MODE__COMBINE_EXPERT : SPEX__COMBINE_MODE__COMBINE_PRESUM;
    h.step = b->step;
    h.body_case = SPEX__HEADER__BODY_DISPATCH;
    h.dispatch = &d;
    if (send_frame(b, r, &h, b->ebuf, len, &frame, err)) return -1;
    ep_rank_stats_t *rs = &b->st->rank[r];
    ep_layer_stats_t *ls = &b->st->layer[layer];
    int64_t raw = (int64_t)(rowb * rb->n_rows);
    rs->rows += rb->n_rows;
    rs->pairs += rb->n_pairs;
    rs->dispatch.messages++, rs->dispatch.raw_bytes += raw, rs->dispatch.wire_bytes += (int64_t)frame;
    ls->dispatch.messages++, ls->dispatch.raw_bytes += raw, ls->dispatch.wire_bytes += (int64_t)frame;
    b->pending[r] = true;
    return 0;
}

/* ---------------------------------------------------------------- combine */

static int on_combine(ep_backend_t *b, int src, const wire_header_t *h, const uint8_t *pl, size_t plen,
                      spex_err_t *err) {
    const Spex__Combine *c = h->combine;
    rank_batch_t *rb = &b->rb[src];
    int want = b->o.mode == EP_COMBINE_EXPERT ? rb->n_pairs : rb->n_rows;
    if ((int)c->vectors != want || strcmp(c->codec, b->cname))
        return spex_fail(err, "rank %d: combine of %u vectors with codec '%s', expected %d with '%s'", src,
                         c->vectors, c->codec, want, b->cname);
    if (!(rb->vec = grow(rb->vec, &rb->vec_cap, sizeof(float) * (size_t)want * b->hidden + 1)))
        return spex_fail(err, "out of memory");
    if (codec_decode(&b->o.combine, pl, plen, want, b->hidden, rb->vec, b->ctx, err))
        return spex_err_prefix(err, "rank %d: combine: ", src);
    rb->n_vec = want;
    rb->cursor = 0;
    ep_rank_stats_t *rs = &b->st->rank[src];
    if (c->layer >= (uint32_t)b->n_layers) return spex_fail(err, "rank %d: combine for layer %u", src, c->layer);
    ep_layer_stats_t *ls = &b->st->layer[c->layer];
    int64_t raw = (int64_t)sizeof(float) * want * b->hidden;
    rs->combine.messages++, rs->combine.raw_bytes += raw;
    ls->combine.messages++, ls->combine.raw_bytes += raw;
    rs->t_decode += c->decode_seconds;
    rs->t_compute += c->compute_seconds;
    rs->t_encode += c->encode_seconds;
    if (c->compute_seconds > b->call_expert) b->call_expert = c->compute_seconds;   /* slowest rank */
    return 0;
}

/* out[n, hidden] from the decoded vectors (see ep_backend.h for the orders). */
static void sum_rows(ep_backend_t *b, int n, int k, const int32_t *idx, float *out) {
    int hid = b->hidden;
    memset(out, 0, sizeof(float) * (size_t)n * hid);
    if (b->o.mode == EP_COMBINE_EXPERT) {
        for (int i = 0; i < n; i++) {
            float *o = out + (size_t)i * hid;
            for (int j = 0; j < k; j++) {
                rank_batch_t *rb = &b->rb[placement_pick(b->pl, idx[(size_t)i * k + j], i)];
                const float *v = rb->vec + (size_t)rb->cursor++ * hid;
                for (int c = 0; c < hid; c++) o[c] += v[c];
            }
        }
        return;
    }
    for (int r = 1; r < b->world; r++) {
        rank_batch_t *rb = &b->rb[r];
        for (int p = 0; p < rb->n_rows; p++) {
            float *o = out + (size_t)rb->rows[p] * hid;
            const float *v = rb->vec + (size_t)p * hid;
            for (int c = 0; c < hid; c++) o[c] += v[c];
        }
    }
}

/* ---------------------------------------------------------------- backend */

static int ep_routed(moe_backend_t *self, int layer, const float *x, int n, int k, const int32_t *idx,
                     const float *w, float *out, spex_err_t *err) {
    ep_backend_t *b = (ep_backend_t *)self;
    if (b->broken) return spex_fail(err, "expert parallelism: a worker rank failed earlier");
    if (layer < 0 || layer >= b->n_layers || !config_layer_is_moe(&b->cfg, layer))
        return spex_fail(err, "experts: layer %d has no routed experts", layer);
    ep_layer_stats_t *ls = &b->st->layer[layer];
    double t0 = link_now(), t_wait = 0;
    if (group_rows(b, layer, n, k, idx, w, err)) return -1;
    for (int r = 1; r < b->world; r++)
        if (b->rb[r].n_rows > 0 && send_dispatch(b, r, layer, x, err)) return -1;
    double t1 = link_now();
    char what[96];
    snprintf(what, sizeof what, "dispatch of layer %d (step %llu)", layer, (unsigned long long)b->step);
    b->call_expert = 0;
    if (await_replies(b, b->step, SPEX__HEADER__BODY_COMBINE, what, on_combine, &t_wait, err)) return -1;
    b->step++;
    sum_rows(b, n, k, idx, out);
    double t2 = link_now();
    ls->calls++;
    ls->rows += n;
    ls->pairs += (int64_t)n * k;
    ls->t_dispatch += t1 - t0;
    ls->t_wait += t_wait;
    ls->t_combine += t2 - t1 - t_wait;
    ls->t_expert += b->call_expert;
    b->st->t_end = t2;
    return 0;
}

static void say_goodbye(ep_backend_t *b) {
    spex_err_t err;
    for (int r = 1; r < b->world; r++) {
        Spex__Header h = SPEX__HEADER__INIT;
        Spex__Bye bye = SPEX__BYE__INIT;
        h.step = b->step;
        h.body_case = SPEX__HEADER__BODY_BYE;
        h.bye = &bye;
        if (send_frame(b, r, &h, NULL, 0, NULL, &err)) return;
    }
    b->link->flush(b->link, link_now() + b->o.rank_timeout, &err);
}

static void ep_destroy(moe_backend_t *self) {
    ep_backend_t *b = (ep_backend_t *)self;
    if (!b) return;
    if (b->link && !b->broken && b->rb) say_goodbye(b);
    if (b->link) b->link->destroy(b->link);
    if (b->cleanup) b->cleanup(b->cleanup_user);
    if (b->rb)
        for (int r = 0; r < b->world; r++) {
            free(b->rb[r].rows);
            free(b->rb[r].counts);
            free(b->rb[r].experts);
            free(b->rb[r].weights);
            free(b->rb[r].vec);
        }
    free(b->rb);
    free(b->pending);
    free(b->deadline);
    free(b->xbuf);
    free(b->ebuf);
    codec_ctx_free(b->ctx);
    ep_stats_free(b->st);
    placement_free(b->pl);
    free(b);
}

moe_backend_t *ep_backend_create(const spex_config_t *cfg, uint64_t model_id, placement_t *pl, link_t *link,
                                 const ep_options_t *o, void (*cleanup)(void *), void *cleanup_user,
                                 spex_err_t *err) {
    ep_backend_t *b = calloc(1, sizeof *b);
    if (!b) {
        if (link) link->destroy(link);
        if (cleanup) cleanup(cleanup_user);
        placement_free(pl);
        spex_fail(err, "out of memory");
        return NULL;
    }
    b->base.routed = ep_routed;
    b->base.destroy = ep_destroy;
    b->cfg = *cfg;
    b->pl = pl, b->link = link, b->o = *o, b->model_id = model_id;
    b->cleanup = cleanup, b->cleanup_user = cleanup_user;
    b->n_layers = cfg->num_hidden_layers + cfg->num_nextn_predict_layers;
    b->n_experts = cfg->n_routed_experts;
    b->hidden = cfg->hidden_size;
    b->world = link ? link->world : 0;
    b->broken = true;   /* until the handshake succeeds: no goodbyes */
    if (!pl || !link) { spex_fail(err, "expert parallelism: no placement or link"); goto fail; }
    if (pl->n_experts != b->n_experts || pl->world != b->world) {
        spex_fail(err, "placement for %d experts on %d ranks, but the model has %d experts and the job %d ranks",
                  pl->n_experts, pl->world, b->n_experts, b->world);
        goto fail;
    }
    codec_name(&o->dispatch, b->dname, sizeof b->dname);
    codec_name(&o->combine, b->cname, sizeof b->cname);
    b->rb = calloc((size_t)b->world, sizeof *b->rb);
    b->pending = calloc((size_t)b->world, sizeof *b->pending);
    b->deadline = calloc((size_t)b->world, sizeof *b->deadline);
    if (!b->rb || !b->pending || !b->deadline || !(b->ctx = codec_ctx_create(err)) ||
        !(b->st = ep_stats_create(b->n_layers, b->n_experts, b->world, err))) {
        spex_fail(err, "out of memory");
        goto fail;
    }
    snprintf(b->st->dispatch_codec, sizeof b->st->dispatch_codec, "%s", b->dname);
    snprintf(b->st->combine_codec, sizeof b->st->combine_codec, "%s", b->cname);
    snprintf(b->st->combine_mode, sizeof b->st->combine_mode, "%s", o->mode == EP_COMBINE_EXPERT ? "expert" : "presum");
    b->broken = false;
    if (handshake(b, err)) goto fail;
    b->st->t_begin = b->st->t_end = link_now();
    return &b->base;
fail:
    ep_destroy(&b->base);
    return NULL;
}

ep_stats_t *ep_backend_stats(moe_backend_t *self) {
    return self && self->routed == ep_routed ? ((ep_backend_t *)self)->st : NULL;
}

static int on_stats(ep_backend_t *b, int src, const wire_header_t *h, const uint8_t *pl, size_t plen,
                    spex_err_t *err) {
    (void)pl, (void)plen, (void)err;
    ep_rank_stats_t *r = &b->st->rank[src];
    r->weight_bytes = (int64_t)h->stats->weight_bytes;
    r->max_rss_bytes = (int64_t)h->stats->max_rss_bytes;
    r->busy_seconds = h->stats->busy_seconds;
    r->idle_seconds = h->stats->idle_seconds;
    return 0;
}

int ep_backend_fetch_worker_stats(moe_backend_t *self, spex_err_t *err) {
    ep_backend_t *b = (ep_backend_t *)self;
    if (!ep_backend_stats(self)) return spex_fail(err, "not an expert-parallel backend");
    if (b->broken) return spex_fail(err, "expert parallelism: a worker rank failed earlier");
    for (int r = 1; r < b->world; r++) {
        Spex__Header h = SPEX__HEADER__INIT;
        Spex__StatsRequest q = SPEX__STATS_REQUEST__INIT;
        h.step = b->step;
        h.body_case = SPEX__HEADER__BODY_STATS_REQUEST;
        h.stats_request = &q;
        if (send_frame(b, r, &h, NULL, 0, NULL, err)) return -1;
        b->pending[r] = true;
    }
    double tw = 0, t_end = b->st->t_end;
    int rc = await_replies(b, b->step, SPEX__HEADER__BODY_STATS, "stats request", on_stats, &tw, err);
    b->step++;
    b->st->t_end = t_end;
    return rc;
}
