/* ep_protocol.c - see ep_protocol.h: the requests rank 0 sends, and the one
 * bounded wait for the answers they are owed. */
#include "ep_protocol.h"

#include "core/clock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One request and the answers it is owed: a dispatch call, or the session
 * request (hello, stats, shutdown) in the last slot. */
typedef struct call {
    bool open;
    uint64_t step;        /* the request's; its answers carry it back */
    int layer;            /* of a dispatch */
    bool *pending;        /* [world]: owes an answer */
    double *deadline;     /* [world]: until then ("loading" restarts it) */
    int *owed_vectors;    /* [world]: the combine each rank owes */
    uint8_t **parked;     /* [world]: its answer, arrived while another call was awaited */
    size_t *parked_len;   /* [world] */
} call_t;

#define N_CALLS (EP_PROTOCOL_MAX_CALLS + 1)
#define REQ EP_PROTOCOL_MAX_CALLS   /* the session request's slot */

struct ep_protocol {
    link_t *link;
    int world;
    double rank_timeout;
    uint64_t next_step;   /* of the next request */
    call_t calls[N_CALLS];
    uint64_t model_id;    /* the session's, from the hello */
    char dcodec[32], ccodec[32];
    Spex__CombineMode combine;   /* the session's, from the hello */
    bool in_session;      /* hello acknowledged, no bye or shutdown yet */
    bool broken;          /* a rank failed: no more requests, no bye */
    int culprit;          /* the rank named by the first failure (-1: unknown) */
    const char *cause;    /* its kind (ep_protocol_failure) */
    char failure[SPEX_ERR_MSG_MAX];   /* its message */
};

typedef int (*answer_fn)(ep_protocol_t *p, void *user, int src, const wire_header_t *h, const uint8_t *pl,
                         size_t plen, size_t frame_len, spex_err_t *err);

/* What a wait is owed, and what to do with each answer. */
typedef struct awaited {
    Spex__Header__BodyCase body;   /* the answer every pending rank owes */
    const char *what;              /* the request, for messages */
    double timeout;                /* s of silence allowed per rank */
    bool drop_others;              /* skip any other frame (shutdown) instead of failing on it */
    answer_fn fn;                  /* NULL: nothing to take from the answer */
    void *user;
    double *t_wait;                /* += time spent receiving (NULL: not counted) */
} awaited_t;

static const char BROKEN[] = "expert parallelism: a worker rank failed earlier";

/* ---------------------------------------------------------------- calls */

static int call_init(call_t *c, int world) {
    size_t n = (size_t)world;
    c->pending = calloc(n, sizeof *c->pending);
    c->deadline = calloc(n, sizeof *c->deadline);
    c->owed_vectors = calloc(n, sizeof *c->owed_vectors);
    c->parked = calloc(n, sizeof *c->parked);
    c->parked_len = calloc(n, sizeof *c->parked_len);
    return c->pending && c->deadline && c->owed_vectors && c->parked && c->parked_len ? 0 : -1;
}

/* No rank owes it anything any more; parked answers are dropped. */
static void call_close(call_t *c, int world) {
    c->open = false;
    for (int r = 0; r < world && c->pending; r++) {
        c->pending[r] = false;
        free(c->parked[r]);
        c->parked[r] = NULL;
    }
}

static void call_free(call_t *c, int world) {
    call_close(c, world);
    free(c->pending), free(c->deadline), free(c->owed_vectors), free(c->parked), free(c->parked_len);
}

static call_t *call_open(ep_protocol_t *p, call_t *c) {
    call_close(c, p->world);
    c->open = true;
    c->step = p->next_step++;
    return c;
}

static bool dispatch_in_flight(const ep_protocol_t *p) {
    for (int i = 0; i < EP_PROTOCOL_MAX_CALLS; i++)
        if (p->calls[i].open) return true;
    return false;
}

/* The protocol is broken from now on; the first failure is kept for reports. */
static void mark_broken(ep_protocol_t *p, int rank, const char *cause, const spex_err_t *err) {
    if (!p->broken) {
        p->culprit = rank;
        p->cause = cause;
        snprintf(p->failure, sizeof p->failure, "%s", err->msg);
    }
    p->broken = true;
}

static int fail_broken(const ep_protocol_t *p, spex_err_t *err) {
    return spex_fail(err, "%s: %s", BROKEN, p->failure);
}

const char *ep_protocol_failure(const ep_protocol_t *p, int *rank, const char **cause) {
    if (!p->broken) return NULL;
    if (rank) *rank = p->culprit;
    if (cause) *cause = p->cause;
    return p->failure;
}

/* ---------------------------------------------------------------- lifetime */

ep_protocol_t *ep_protocol_create(link_t *link, double rank_timeout, spex_err_t *err) {
    if (!link) return NULL;   /* its creator said why */
    ep_protocol_t *p = calloc(1, sizeof *p);
    int bad = !p;
    for (int i = 0; i < N_CALLS && !bad; i++) bad = call_init(&p->calls[i], link->world);
    if (bad) {
        for (int i = 0; p && i < N_CALLS; i++) call_free(&p->calls[i], link->world);
        free(p);
        link->destroy(link);
        spex_fail(err, "out of memory");
        return NULL;
    }
    p->link = link;
    p->culprit = -1;
    p->world = link->world;
    p->rank_timeout = rank_timeout;
    return p;
}

int ep_protocol_world(const ep_protocol_t *p) { return p->world; }

bool ep_protocol_broken(const ep_protocol_t *p) { return p->broken; }

bool ep_protocol_in_process(const ep_protocol_t *p) { return p->link->in_process; }

void ep_protocol_poll(ep_protocol_t *p) {
    if (p && !p->broken && p->link->poll) p->link->poll(p->link);
}

/* ---------------------------------------------------------------- sending */

static int send_to(ep_protocol_t *p, const call_t *c, int rank, Spex__Header *h, const uint8_t *payload, size_t plen,
                   size_t *frame_len, spex_err_t *err) {
    h->step = c->step;
    if (wire_send(p->link, rank, h, payload, plen, frame_len, err) == 0) return 0;
    spex_err_prefix(err, "rank %d: ", rank);
    mark_broken(p, rank, "link", err);
    return -1;
}

/* h to every worker; with answer_owed each then owes call c one. */
static int send_all(ep_protocol_t *p, call_t *c, Spex__Header *h, bool answer_owed, spex_err_t *err) {
    for (int r = 1; r < p->world; r++) {
        if (send_to(p, c, r, h, NULL, 0, NULL, err)) return -1;
        c->pending[r] = answer_owed;
    }
    return 0;
}

/* ---------------------------------------------------------------- waiting */

typedef struct late_ctx {
    const call_t *c;
    double now;
} late_ctx_t;

static bool is_pending(const void *user, int rank) { return ((const call_t *)user)->pending[rank]; }

static bool is_late(const void *user, int rank) {
    const late_ctx_t *x = user;
    return x->c->pending[rank] && x->now >= x->c->deadline[rank];
}

/* Earliest deadline of a rank that owes c an answer; 0 when nobody does. */
static double next_deadline(const ep_protocol_t *p, const call_t *c) {
    double dl = 0;
    for (int r = 1; r < p->world; r++)
        if (c->pending[r] && (dl == 0 || c->deadline[r] < dl)) dl = c->deadline[r];
    return dl;
}

/* The other open dispatch call that h answers (its answer comes before its own
 * wait: keep it), or NULL. */
static call_t *owner_elsewhere(ep_protocol_t *p, const call_t *c, int src, const wire_header_t *h) {
    for (int i = 0; i < EP_PROTOCOL_MAX_CALLS; i++) {
        call_t *o = &p->calls[i];
        if (o != c && o->open && o->pending[src] && !o->parked[src] && h->step == o->step) return o;
    }
    return NULL;
}

/* 1: h is the answer `src` owes c; 2: it answers call *park (keep it); 0: a
 * frame to skip; -1: a protocol error. */
static int classify(ep_protocol_t *p, const awaited_t *a, const call_t *c, int src, const wire_header_t *h,
                    call_t **park, spex_err_t *err) {
    bool owed = c->pending[src] && h->step == c->step && h->body_case == a->body;
    if (owed || a->drop_others) return owed;
    if (h->body_case == a->body && (*park = owner_elsewhere(p, c, src, h))) return 2;
    if (h->body_case == SPEX__HEADER__BODY_LOADING) {
        c->deadline[src] = spex_now() + a->timeout;
        return 0;
    }
    if (h->body_case == SPEX__HEADER__BODY_ERROR)
        return spex_fail(err, "%s (answering the %s)", h->error->message, a->what);
    return spex_fail(err, "rank %d: unexpected %s message (step %llu) while waiting for the %s", src,
                     wire_body_name(h), (unsigned long long)h->step, a->what);
}

/* One frame from src while waiting for call c; a frame parked for another
 * call is taken from *buf (set to NULL). */
static int on_frame(ep_protocol_t *p, const awaited_t *a, call_t *c, int src, uint8_t **buf, size_t len,
                    spex_err_t *err) {
    wire_header_t *h = NULL;
    const uint8_t *pl;
    size_t plen;
    spex_err_t dropped;
    call_t *park = NULL;
    if (wire_unpack(*buf, len, src, &h, &pl, &plen, a->drop_others ? &dropped : err))
        return a->drop_others ? 0 : -1;
    int rc = classify(p, a, c, src, h, &park, err);
    if (rc == 1 && (!a->fn || (rc = a->fn(p, a->user, src, h, pl, plen, len, err)) == 0)) c->pending[src] = false;
    if (rc == 2) {
        park->parked[src] = *buf;
        park->parked_len[src] = len;
        *buf = NULL;
    }
    wire_header_free(h);
    if (rc < 0) p->culprit = src;   /* await_session reports it */
    return rc < 0 ? -1 : 0;
}

/* The answers to c that came while another call was awaited. */
static int take_parked(ep_protocol_t *p, const awaited_t *a, call_t *c, spex_err_t *err) {
    for (int r = 1; r < p->world; r++) {
        if (!c->parked[r]) continue;
        uint8_t *buf = c->parked[r];
        c->parked[r] = NULL;
        int rc = on_frame(p, a, c, r, &buf, c->parked_len[r], err);
        free(buf);
        if (rc) return -1;
    }
    return 0;
}

/* Wait until no rank owes call c an answer. 0: all answered; 1: a pending
 * rank's deadline passed (late[cap] names those ranks); -1: error. */
static int await_answers(ep_protocol_t *p, call_t *c, const awaited_t *a, char *late, size_t cap, spex_err_t *err) {
    for (int r = 1; r < p->world; r++) c->deadline[r] = spex_now() + a->timeout;
    if (take_parked(p, a, c, err)) return -1;
    for (double dl; (dl = next_deadline(p, c)) > 0;) {
        uint8_t *buf = NULL;
        size_t len = 0;
        int src = -1;
        double t0 = spex_now();
        int rc = p->link->recv(p->link, LINK_ANY, dl, &src, &buf, &len, err);
        if (a->t_wait) *a->t_wait += spex_now() - t0;
        if (rc == 1) {   /* the loopback returns at once: not every deadline may have passed */
            late_ctx_t x = {c, spex_now()};
            if (link_format_ranks(p->world, is_late, &x, late, cap)[0]) return 1;
            continue;
        }
        if (rc == 0) rc = on_frame(p, a, c, src, &buf, len, err);
        free(buf);
        if (rc) return -1;
    }
    return 0;
}

/* A request's wait: every failure names the rank and breaks the protocol;
 * the call is closed either way. */
static int await_session(ep_protocol_t *p, call_t *c, const awaited_t *a, spex_err_t *err) {
    char late[256];
    p->culprit = -1;
    int rc = await_answers(p, c, a, late, sizeof late, err);
    if (rc == 1) {
        spex_fail(err, "rank %s did not answer the %s within %.0f s (dead or stuck)", late, a->what, a->timeout);
        mark_broken(p, atoi(late), "no_answer", err);
    } else if (rc) {
        mark_broken(p, p->culprit, p->culprit >= 0 ? "bad_answer" : "link", err);
    }
    call_close(c, p->world);
    return rc ? -1 : 0;
}

/* ---------------------------------------------------------------- hello */

/* user: the ep_stats_t; p->model_id: the identity the hello sent. */
static int on_ack(ep_protocol_t *p, void *user, int src, const wire_header_t *h, const uint8_t *pl, size_t plen,
                  size_t frame_len, spex_err_t *err) {
    (void)pl, (void)plen, (void)frame_len;
    const Spex__HelloAck *a = h->hello_ack;
    if (!a->ok)
        return spex_fail(err, "%srank %d refused the session: %s", p->link->in_process ? "in-process expert " : "", src,
                         a->reason);
    if (a->model_id != p->model_id) return spex_fail(err, "rank %d acknowledged another model identity", src);
    ((ep_stats_t *)user)->rank[src].weight_bytes = (int64_t)a->weight_bytes;
    return 0;
}

/* Per-layer expert lists of one rank (placements with a table per layer). */
typedef struct hello_layers {
    Spex__LayerExperts *le;       /* [n_layers] */
    Spex__LayerExperts **ptr;     /* [n_layers] */
    uint32_t *ids;                /* [n_layers * n_routed] */
    int *ex;                      /* [n_routed] */
} hello_layers_t;

static void hello_layers_free(hello_layers_t *hl) {
    free(hl->le), free(hl->ptr), free(hl->ids), free(hl->ex);
}

static int hello_layers_alloc(hello_layers_t *hl, const ep_hello_t *hello) {
    size_t L = (size_t)hello->n_layers + 1, E = (size_t)hello->n_routed + 1;
    *hl = (hello_layers_t){calloc(L, sizeof *hl->le), calloc(L, sizeof *hl->ptr), calloc(L * E, sizeof(uint32_t)),
                           calloc(E, sizeof(int))};
    return hl->le && hl->ptr && hl->ids && hl->ex ? 0 : -1;
}

/* m->layer_experts for `rank`: its experts in every layer (none when one table serves all layers). */
static void hello_add_layers(Spex__Hello *m, const ep_hello_t *hello, int rank, hello_layers_t *hl) {
    if (placement_max_layer(hello->pl) < 0) return;
    for (int l = 0; l < hello->n_layers; l++) {
        Spex__LayerExperts *le = &hl->le[l];
        spex__layer_experts__init(le);
        uint32_t *ids = hl->ids + (size_t)l * (size_t)(hello->n_routed + 1);
        int n = placement_rank_layer_experts(hello->pl, l, rank, hl->ex);
        for (int i = 0; i < n; i++) ids[i] = (uint32_t)hl->ex[i];
        le->layer = (uint32_t)l;
        le->n_experts = (size_t)n;
        le->experts = ids;
        hl->ptr[l] = le;
    }
    m->n_layer_experts = (size_t)hello->n_layers;
    m->layer_experts = hl->ptr;
}

/* m->expert_digests: the digests of the (layer, expert) pairs `rank` hosts, ascending. */
static void hello_add_digests(Spex__Hello *m, const ep_hello_t *hello, int rank, uint64_t *digs, hello_layers_t *hl) {
    size_t k = 0, E = (size_t)hello->n_routed;
    if (!hello->expert_digests) return;
    for (int l = 0; l < hello->n_layers; l++) {
        int n = placement_rank_layer_experts(hello->pl, l, rank, hl->ex);
        for (int i = 0; i < n; i++)
            if (hello->expert_digests[(size_t)l * E + hl->ex[i]]) digs[k++] = hello->expert_digests[(size_t)l * E + hl->ex[i]];
    }
    m->n_expert_digests = k;
    m->expert_digests = digs;
}

/* The hello for one rank; ids[] receives its expert ids (the union over
 * layers), digs[n_layers * n_routed] its content digests. */
static Spex__Hello hello_for(const ep_hello_t *hello, int rank, int world, uint32_t *ids, uint64_t *digs,
                             hello_layers_t *hl) {
    Spex__Hello m = SPEX__HELLO__INIT;
    int n = placement_rank_experts(hello->pl, rank, hl->ex);
    for (int i = 0; i < n; i++) ids[i] = (uint32_t)hl->ex[i];
    m.model_id = hello->model_id;
    m.rank = (uint32_t)rank;
    m.world = (uint32_t)world;
    m.n_layers = (uint32_t)hello->n_layers;
    m.n_routed = (uint32_t)hello->n_routed;
    m.hidden = (uint32_t)hello->hidden;
    m.n_experts = (size_t)n;
    m.experts = ids;
    m.dispatch_codec = (char *)hello->dispatch_codec;
    m.combine_codec = (char *)hello->combine_codec;
    m.combine = hello->combine;
    hello_add_layers(&m, hello, rank, hl);
    hello_add_digests(&m, hello, rank, digs, hl);
    return m;
}

static int send_hellos(ep_protocol_t *p, call_t *c, const ep_hello_t *hello, ep_stats_t *st, spex_err_t *err) {
    hello_layers_t hl = {0};
    uint32_t *ids = malloc(sizeof(uint32_t) * ((size_t)hello->n_routed + 1));
    uint64_t *digs = malloc(sizeof(uint64_t) * ((size_t)hello->n_layers * (size_t)hello->n_routed + 1));
    int rc = ids && digs && !hello_layers_alloc(&hl, hello) ? 0 : spex_fail(err, "out of memory");
    for (int r = 1; r < p->world && !rc; r++) {
        Spex__Header h = SPEX__HEADER__INIT;
        Spex__Hello m = hello_for(hello, r, p->world, ids, digs, &hl);
        st->rank[r].experts_hosted = (int64_t)m.n_experts;
        h.body_case = SPEX__HEADER__BODY_HELLO;
        h.hello = &m;
        rc = send_to(p, c, r, &h, NULL, 0, NULL, err);
        c->pending[r] = true;
    }
    hello_layers_free(&hl);
    free(ids);
    free(digs);
    return rc;
}

int ep_protocol_hello(ep_protocol_t *p, const ep_hello_t *hello, ep_stats_t *st, spex_err_t *err) {
    if (p->broken) return fail_broken(p, err);
    if (dispatch_in_flight(p)) return spex_fail(err, "expert parallelism: hello while a dispatch is in flight");
    call_t *c = call_open(p, &p->calls[REQ]);
    if (send_hellos(p, c, hello, st, err)) {
        call_close(c, p->world);
        mark_broken(p, -1, "link", err);
        return -1;
    }
    p->model_id = hello->model_id;
    awaited_t a = {.body = SPEX__HEADER__BODY_HELLO_ACK, .what = "hello", .timeout = p->rank_timeout, .fn = on_ack,
                   .user = st};
    if (await_session(p, c, &a, err)) return -1;
    snprintf(p->dcodec, sizeof p->dcodec, "%s", hello->dispatch_codec);
    snprintf(p->ccodec, sizeof p->ccodec, "%s", hello->combine_codec);
    p->combine = hello->combine;
    p->in_session = true;
    return 0;
}

/* ---------------------------------------------------------------- dispatch, combine */

/* h with a payload that fill() writes in place, to `rank`. */
static int send_filled(ep_protocol_t *p, const call_t *c, int rank, Spex__Header *h, size_t cap, ep_fill_fn fill,
                       void *user, size_t *frame_len, spex_err_t *err) {
    h->step = c->step;
    wire_out_t o;
    uint8_t *frame, *dst = wire_begin(&o, h, cap, err);
    size_t plen = 0, len = 0;
    if (!dst) return -1;
    if (fill(user, dst, cap, &plen, err)) {
        wire_out_free(&o);
        return -1;
    }
    if (wire_end(&o, h, plen, &frame, &len, err)) return -1;
    if (frame_len) *frame_len = len;
    if (p->link->send(p->link, rank, frame, len, err) == 0) return 0;
    spex_err_prefix(err, "rank %d: ", rank);
    mark_broken(p, rank, "link", err);
    return -1;
}

int ep_protocol_call_open(ep_protocol_t *p, int layer, spex_err_t *err) {
    if (p->broken) return fail_broken(p, err);
    if (!p->in_session) return spex_fail(err, "expert parallelism: dispatch outside a session");
    for (int i = 0; i < EP_PROTOCOL_MAX_CALLS; i++)
        if (!p->calls[i].open) {
            call_open(p, &p->calls[i])->layer = layer;
            return i;
        }
    return spex_fail(err, "expert parallelism: more than %d dispatches in flight", EP_PROTOCOL_MAX_CALLS);
}

/* The open dispatch call `call`, or NULL (err says why). */
static call_t *dispatch_call(ep_protocol_t *p, int call, spex_err_t *err) {
    if (p->broken) { fail_broken(p, err); return NULL; }
    if (call < 0 || call >= EP_PROTOCOL_MAX_CALLS || !p->calls[call].open) {
        spex_fail(err, "expert parallelism: dispatch call %d is not open", call);
        return NULL;
    }
    return &p->calls[call];
}

int ep_protocol_dispatch(ep_protocol_t *p, int call, int rank, const ep_rows_t *rows, size_t cap, ep_fill_fn fill,
                         void *user, size_t *frame_len, spex_err_t *err) {
    call_t *c = dispatch_call(p, call, err);
    if (!c) return -1;
    Spex__Header h = SPEX__HEADER__INIT;
    Spex__Dispatch d = SPEX__DISPATCH__INIT;
    d.layer = (uint32_t)rows->layer;
    d.rows = (uint32_t)rows->rows;
    d.n_counts = (size_t)rows->rows;
    d.counts = rows->counts;
    d.n_experts = d.n_weights = (size_t)rows->pairs;
    d.experts = rows->experts;
    d.weights = rows->weights;
    d.codec = p->dcodec;
    d.combine = p->combine;
    h.body_case = SPEX__HEADER__BODY_DISPATCH;
    h.dispatch = &d;
    if (send_filled(p, c, rank, &h, cap, fill, user, frame_len, err)) return -1;
    c->owed_vectors[rank] = p->combine == SPEX__COMBINE_MODE__COMBINE_EXPERT ? rows->pairs : rows->rows;
    c->pending[rank] = true;
    return 0;
}

typedef struct combine_ctx {   /* the caller of ep_protocol_await_combine */
    const call_t *call;
    ep_combine_fn fn;
    void *user;
} combine_ctx_t;

/* Check a combine against the dispatch it answers, then hand it on. */
static int on_combine(ep_protocol_t *p, void *user, int src, const wire_header_t *h, const uint8_t *pl, size_t plen,
                      size_t frame_len, spex_err_t *err) {
    const combine_ctx_t *x = user;
    const Spex__Combine *c = h->combine;
    int want = x->call->owed_vectors[src];
    if ((int)c->vectors != want || strcmp(c->codec, p->ccodec))
        return spex_fail(err, "rank %d: combine of %u vectors with codec '%s', expected %d with '%s'", src,
                         c->vectors, c->codec, want, p->ccodec);
    if (c->layer != (uint32_t)x->call->layer) return spex_fail(err, "rank %d: combine for layer %u", src, c->layer);
    return x->fn(x->user, src, c, pl, plen, frame_len, err);
}

int ep_protocol_await_combine(ep_protocol_t *p, int call, ep_combine_fn fn, void *user, double *t_wait,
                              spex_err_t *err) {
    call_t *c = dispatch_call(p, call, err);
    if (!c) {
        if (call >= 0 && call < EP_PROTOCOL_MAX_CALLS) call_close(&p->calls[call], p->world);
        return -1;
    }
    char what[96];
    snprintf(what, sizeof what, "dispatch of layer %d (step %llu)", c->layer, (unsigned long long)c->step);
    combine_ctx_t x = {c, fn, user};
    awaited_t a = {.body = SPEX__HEADER__BODY_COMBINE, .what = what, .timeout = p->rank_timeout, .fn = on_combine,
                   .user = &x, .t_wait = t_wait};
    return await_session(p, c, &a, err);
}

/* ---------------------------------------------------------------- stats */

static int on_stats(ep_protocol_t *p, void *user, int src, const wire_header_t *h, const uint8_t *pl, size_t plen,
                    size_t frame_len, spex_err_t *err) {
    (void)p, (void)pl, (void)plen, (void)frame_len, (void)err;
    ep_rank_stats_t *r = &((ep_stats_t *)user)->rank[src];
    r->weight_bytes = (int64_t)h->stats->weight_bytes;
    r->max_rss_bytes = (int64_t)h->stats->max_rss_bytes;
    r->busy_seconds = h->stats->busy_seconds;
    r->idle_seconds = h->stats->idle_seconds;
    return 0;
}

/* Receive and drop whatever arrived: the late answers of a rank that stalled
 * and resumed after the protocol broke, which would otherwise stay blocked
 * sending them (and then abort the job). */
static void drain(ep_protocol_t *p) {
    uint8_t *buf = NULL;
    size_t len = 0;
    int src;
    spex_err_t e;
    for (int n = 0; n < 64 && p->link->recv(p->link, LINK_ANY, spex_now(), &src, &buf, &len, &e) == 0; n++) {
        free(buf);
        buf = NULL;
    }
}

int ep_protocol_fetch_stats(ep_protocol_t *p, ep_stats_t *st, spex_err_t *err) {
    if (p->broken) {
        drain(p);
        return fail_broken(p, err);
    }
    if (dispatch_in_flight(p)) return spex_fail(err, "expert parallelism: stats requested while a dispatch is in flight");
    Spex__Header h = SPEX__HEADER__INIT;
    Spex__StatsRequest q = SPEX__STATS_REQUEST__INIT;
    h.body_case = SPEX__HEADER__BODY_STATS_REQUEST;
    h.stats_request = &q;
    call_t *c = call_open(p, &p->calls[REQ]);
    if (send_all(p, c, &h, true, err)) {
        call_close(c, p->world);
        return -1;
    }
    awaited_t a = {.body = SPEX__HEADER__BODY_STATS, .what = "stats request", .timeout = p->rank_timeout,
                   .fn = on_stats, .user = st};
    return await_session(p, c, &a, err);
}

/* ---------------------------------------------------------------- bye, shutdown */

static void say_bye(ep_protocol_t *p) {
    spex_err_t err;
    Spex__Header h = SPEX__HEADER__INIT;
    Spex__Bye bye = SPEX__BYE__INIT;
    h.body_case = SPEX__HEADER__BODY_BYE;
    h.bye = &bye;
    p->in_session = false;
    call_t *c = call_open(p, &p->calls[REQ]);
    if (send_all(p, c, &h, false, &err) == 0) p->link->flush(p->link, spex_now() + p->rank_timeout, &err);
    call_close(c, p->world);
}

void ep_protocol_free(ep_protocol_t *p) {
    if (!p) return;
    if (p->in_session && !p->broken && !dispatch_in_flight(p)) say_bye(p);
    p->link->destroy(p->link);
    for (int i = 0; i < N_CALLS; i++) call_free(&p->calls[i], p->world);
    free(p);
}

int ep_protocol_shutdown(ep_protocol_t *p, int code, double timeout, spex_err_t *err) {
    Spex__Header h = SPEX__HEADER__INIT;
    Spex__Shutdown s = SPEX__SHUTDOWN__INIT;
    s.code = code;
    h.body_case = SPEX__HEADER__BODY_SHUTDOWN;
    h.shutdown = &s;
    p->in_session = false;   /* a shutdown also ends the session, and any dispatch in flight */
    for (int i = 0; i < EP_PROTOCOL_MAX_CALLS; i++) call_close(&p->calls[i], p->world);
    call_t *c = call_open(p, &p->calls[REQ]);
    if (send_all(p, c, &h, true, err)) return -1;
    awaited_t a = {.body = SPEX__HEADER__BODY_SHUTDOWN, .what = "shutdown", .timeout = timeout, .drop_others = true};
    char ranks[256];
    int rc = await_answers(p, c, &a, ranks, sizeof ranks, err);
    if (rc && link_format_ranks(p->world, is_pending, c, ranks, sizeof ranks)[0])
        spex_fail(err, "rank %s did not acknowledge the shutdown within %.0f s", ranks, timeout);
    return rc ? -1 : 0;
}

int ep_protocol_end_job(int code, double rank_timeout, spex_err_t *err) {
    ep_protocol_t *p = ep_protocol_create(link_mpi_create(err), rank_timeout, err);
    if (!p) return -1;
    int rc = ep_protocol_shutdown(p, code, code == 0 || rank_timeout < 3 ? rank_timeout : 3, err);
    ep_protocol_free(p);
    return rc;
}
