/* worker.c - see worker.h: the worker side of each message. */
#include "worker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "core/config.h"
#include "core/expert_group.h"
#include "core/log.h"
#include "core/model_id.h"
#include "core/safetensors.h"
#include "transport/codec.h"
#include "transport/wire.h"

struct worker {
    int rank;
    char *dir;
    spex_config_t cfg;
    tensor_store_t *ts;
    uint64_t model_id;
    int n_layers, n_experts, hidden;
    expert_t **experts;      /* [n_layers * n_experts]: hosted ones, else NULL */
    int *hosted;             /* [n_experts] expert ids loaded (ascending) */
    int n_hosted;
    uint64_t weight_bytes;
    bool in_session;
    codec_t dcodec, ccodec;
    char dname[64], cname[64];
    int combine;             /* SPEX__COMBINE_MODE__* */
    codec_ctx_t *ctx;
    Spex__Stats st;          /* session totals */
    char *refusal;           /* set: no model, refuse every hello with this */
    void (*progress)(void *user, int done, int total);
    void *progress_user;
};

/* ------------------------------------------------------------ lifetime */

worker_t *worker_create(const char *dir, int rank, spex_err_t *err) {
    worker_t *w = calloc(1, sizeof *w);
    char path[4096];
    if (!w) { spex_fail(err, "rank %d: out of memory", rank); return NULL; }
    w->rank = rank;
    w->dir = strdup(dir);
    snprintf(path, sizeof path, "%s/config.json", dir);
    int block[2] = {128, 128};
    if (config_load(&w->cfg, path, err)) goto fail;
    if (w->cfg.fp8_block[0]) block[0] = w->cfg.fp8_block[0], block[1] = w->cfg.fp8_block[1];
    if (!(w->ts = tensor_store_open(dir, block, err)) || model_identity(dir, w->ts, &w->model_id, err)) goto fail;
    w->n_layers = w->cfg.num_hidden_layers + w->cfg.num_nextn_predict_layers;
    w->n_experts = w->cfg.n_routed_experts;
    w->hidden = w->cfg.hidden_size;
    w->experts = calloc((size_t)w->n_layers * (w->n_experts > 0 ? w->n_experts : 1), sizeof *w->experts);
    w->hosted = calloc((size_t)(w->n_experts > 0 ? w->n_experts : 1), sizeof *w->hosted);
    if (!w->dir || !w->experts || !w->hosted || !(w->ctx = codec_ctx_create(err))) {
        spex_fail(err, "out of memory");
        goto fail;
    }
    spex__stats__init(&w->st);
    return w;
fail:
    spex_err_prefix(err, "model '%s': ", dir);   /* the caller names the rank, once */
    worker_free(w);
    return NULL;
}

worker_t *worker_create_refusing(int rank, const char *reason, spex_err_t *err) {
    worker_t *w = calloc(1, sizeof *w);
    if (!w || !(w->refusal = strdup(reason))) {
        free(w);
        spex_fail(err, "rank %d: out of memory", rank);
        return NULL;
    }
    w->rank = rank;
    spex__stats__init(&w->st);
    return w;
}

static void unload_experts(worker_t *w) {
    if (!w->experts) return;
    for (size_t i = 0; i < (size_t)w->n_layers * w->n_experts; i++)
        if (w->experts[i]) {
            expert_free(w->experts[i]);
            free(w->experts[i]);
            w->experts[i] = NULL;
        }
    w->n_hosted = 0;
    w->weight_bytes = 0;
}

void worker_free(worker_t *w) {
    if (!w) return;
    if (w->experts) unload_experts(w);
    free(w->experts);
    free(w->hosted);
    codec_ctx_free(w->ctx);
    tensor_store_free(w->ts);
    free(w->dir);
    free(w->refusal);
    free(w);
}

void worker_set_progress(worker_t *w, void (*fn)(void *user, int done, int total), void *user) {
    w->progress = fn;
    w->progress_user = user;
}

uint64_t worker_model_id(const worker_t *w) { return w->model_id; }

void worker_note_idle(worker_t *w, double seconds) { w->st.idle_seconds += seconds; }

/* ------------------------------------------------------------ replies */

static int reply_frame(const Spex__Header *h, const uint8_t *payload, size_t plen, uint8_t **reply,
                       size_t *reply_len, spex_err_t *err) {
    if (wire_pack(h, payload, plen, reply, reply_len, err)) return -1;
    return 0;
}

static int reply_error(worker_t *w, uint64_t step, const char *msg, uint8_t **reply, size_t *reply_len,
                       spex_err_t *err) {
    Spex__Header h = SPEX__HEADER__INIT;
    Spex__Error e = SPEX__ERROR__INIT;
    char text[SPEX_ERR_MSG_MAX + 32];
    snprintf(text, sizeof text, "rank %d: %s", w->rank, msg);
    spex_log("%s", text);
    e.message = text;
    h.step = step;
    h.body_case = SPEX__HEADER__BODY_ERROR;
    h.error = &e;
    return reply_frame(&h, NULL, 0, reply, reply_len, err);
}

/* ------------------------------------------------------------ hello */

static int load_experts(worker_t *w, const uint32_t *ids, size_t n, spex_err_t *err) {
    bool same = n == (size_t)w->n_hosted && w->weight_bytes > 0;
    for (size_t i = 0; same && i < n; i++) same = w->hosted[i] == (int)ids[i];
    if (same) return 0;   /* a new session over the same shard: keep the weights */
    unload_experts(w);
    int total = 0, done = 0;
    for (int l = 0; l < w->n_layers; l++) total += config_layer_is_moe(&w->cfg, l) ? (int)n : 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] >= (uint32_t)w->n_experts || (i > 0 && ids[i] <= ids[i - 1]))
            return spex_fail(err, "hello: expert list must be ascending ids below %d (entry %zu is %u)",
                             w->n_experts, i, ids[i]);
        w->hosted[w->n_hosted++] = (int)ids[i];
    }
    for (int l = 0; l < w->n_layers; l++) {
        if (!config_layer_is_moe(&w->cfg, l)) continue;
        for (size_t i = 0; i < n; i++) {
            char prefix[256];
            expert_t *e = calloc(1, sizeof *e);
            if (!e) return spex_fail(err, "out of memory loading experts");
            snprintf(prefix, sizeof prefix, "model.layers.%d.mlp.experts.%u", l, ids[i]);
            if (expert_load(e, w->ts, prefix, w->hidden, w->cfg.moe_intermediate_size, err)) {
                expert_free(e);
                free(e);
                return -1;
            }
            w->experts[(size_t)l * w->n_experts + ids[i]] = e;
            w->weight_bytes += 3ull * (uint64_t)w->hidden * (uint64_t)w->cfg.moe_intermediate_size * sizeof(float);
            if (w->progress && (++done % 4 == 0 || done == total)) w->progress(w->progress_user, done, total);
        }
    }
    return 0;
}

/* Why a hello cannot be accepted, or NULL. */
static const char *hello_mismatch(const worker_t *w, const Spex__Hello *m, char *why, size_t cap) {
    if (w->refusal)
        snprintf(why, cap, "%s", w->refusal);
    else if (m->model_id != w->model_id)
        snprintf(why, cap, "model identity %016llx differs from the coordinator's %016llx (checkpoint '%s' is "
                 "not the coordinator's model)", (unsigned long long)w->model_id, (unsigned long long)m->model_id,
                 w->dir);
    else if (m->rank != (uint32_t)w->rank)
        snprintf(why, cap, "hello addressed to rank %u", m->rank);
    else if (m->n_layers != (uint32_t)w->n_layers || m->n_routed != (uint32_t)w->n_experts ||
             m->hidden != (uint32_t)w->hidden)
        snprintf(why, cap, "model shape differs (layers %u/%d, experts %u/%d, hidden %u/%d)", m->n_layers,
                 w->n_layers, m->n_routed, w->n_experts, m->hidden, w->hidden);
    else return NULL;
    return why;
}

static int on_hello(worker_t *w, const Spex__Header *h, uint8_t **reply, size_t *reply_len, spex_err_t *err) {
    const Spex__Hello *m = h->hello;
    char why[1024];
    spex_err_t e = {{0}};
    const char *bad = hello_mismatch(w, m, why, sizeof why);
    if (!bad && (codec_parse(m->dispatch_codec, &w->dcodec, &e) || codec_parse(m->combine_codec, &w->ccodec, &e)))
        bad = e.msg;
    if (!bad && load_experts(w, m->experts, m->n_experts, &e)) bad = e.msg;
    Spex__Header out = SPEX__HEADER__INIT;
    Spex__HelloAck ack = SPEX__HELLO_ACK__INIT;
    ack.model_id = w->model_id;
    ack.ok = bad == NULL;
    ack.reason = bad ? (char *)bad : "";
    if (bad) {
        unload_experts(w);
        spex_log("rank %d: refusing the session: %s", w->rank, bad);
    } else {
        w->in_session = true;
        w->combine = m->combine;
        codec_name(&w->dcodec, w->dname, sizeof w->dname);
        codec_name(&w->ccodec, w->cname, sizeof w->cname);
        spex__stats__init(&w->st);
        w->st.weight_bytes = w->weight_bytes;
    }
    ack.experts_loaded = (uint32_t)w->n_hosted;
    ack.weight_bytes = w->weight_bytes;
    out.step = h->step;
    out.body_case = SPEX__HEADER__BODY_HELLO_ACK;
    out.hello_ack = &ack;
    return reply_frame(&out, NULL, 0, reply, reply_len, err);
}

/* ------------------------------------------------------------ dispatch */

/* Padded routing of a dispatch: idx/w [rows, kmax] with -1 for empty slots.
 * Checks that every expert is hosted here and ascending within its row. */
static int dispatch_routing(const worker_t *w, int layer, const Spex__Dispatch *d, int kmax, int32_t *idx, float *wt,
                            spex_err_t *err) {
    size_t p = 0;
    for (uint32_t i = 0; i < d->rows; i++) {
        for (int j = 0; j < kmax; j++) {
            int32_t e = -1;
            float g = 0.0f;
            if ((uint32_t)j < d->counts[i]) {
                uint32_t id = d->experts[p];
                if (id >= (uint32_t)w->n_experts || !w->experts[(size_t)layer * w->n_experts + id])
                    return spex_fail(err, "dispatch (layer %d, row %u): expert %u is not hosted here", layer, i, id);
                if (j > 0 && (int32_t)id <= idx[(size_t)i * kmax + j - 1])
                    return spex_fail(err, "dispatch (layer %d, row %u): experts not ascending", layer, i);
                e = (int32_t)id;
                g = d->weights[p++];
            }
            idx[(size_t)i * kmax + j] = e;
            wt[(size_t)i * kmax + j] = g;
        }
    }
    return 0;
}

static int dispatch_check(const worker_t *w, const Spex__Dispatch *d, spex_err_t *err) {
    if (!w->in_session || w->refusal) return spex_fail(err, "dispatch outside a session (no hello)");
    if (d->layer >= (uint32_t)w->n_layers || !config_layer_is_moe(&w->cfg, (int)d->layer))
        return spex_fail(err, "dispatch for layer %u, which has no routed experts", d->layer);
    if (strcmp(d->codec, w->dname))
        return spex_fail(err, "dispatch codec '%s', the session agreed on '%s'", d->codec, w->dname);
    if (d->combine != (Spex__CombineMode)w->combine) return spex_fail(err, "dispatch combine mode changed mid-session");
    if (d->rows > (1u << 24)) return spex_fail(err, "dispatch of %u rows is too large", d->rows);
    return 0;
}

/* Combine vectors in dispatch order: compact each[rows*kmax] to the sum(counts) real slots. */
static size_t compact_each(float *each, const Spex__Dispatch *d, int kmax, int hidden) {
    size_t v = 0;
    for (uint32_t i = 0; i < d->rows; i++)
        for (uint32_t j = 0; j < d->counts[i]; j++, v++)
            if (v != (size_t)i * kmax + j)
                memmove(each + v * hidden, each + ((size_t)i * kmax + j) * hidden, sizeof(float) * hidden);
    return v;
}

typedef struct dispatch_buf {
    float *x, *y, *wt;
    int32_t *idx;
    uint8_t *enc;
} dispatch_buf_t;

static void dispatch_buf_free(dispatch_buf_t *b) {
    free(b->x);
    free(b->y);
    free(b->wt);
    free(b->idx);
    free(b->enc);
}

static int run_dispatch(worker_t *w, const Spex__Header *h, const uint8_t *pl, size_t plen, uint8_t **reply,
                        size_t *reply_len, spex_err_t *err) {
    const Spex__Dispatch *d = h->dispatch;
    int rows = (int)d->rows, hid = w->hidden, layer = (int)d->layer, kmax = 0;
    for (int i = 0; i < rows; i++) kmax = (int)d->counts[i] > kmax ? (int)d->counts[i] : kmax;
    bool each = d->combine == SPEX__COMBINE_MODE__COMBINE_EXPERT;
    size_t slots = (size_t)rows * (kmax ? kmax : 1), nvec = each ? slots : (size_t)rows;
    dispatch_buf_t b = {malloc(sizeof(float) * (size_t)rows * hid + 1), calloc(nvec * hid + 1, sizeof(float)),
                        malloc(sizeof(float) * slots), malloc(sizeof(int32_t) * slots), NULL};
    Spex__Header out = SPEX__HEADER__INIT;
    Spex__Combine c = SPEX__COMBINE__INIT;
    int rc = -1;
    double t0 = link_now(), t1, t2;
    if (!b.x || !b.y || !b.wt || !b.idx) { spex_fail(err, "out of memory for %d rows", rows); goto done; }
    if (codec_decode(&w->dcodec, pl, plen, rows, hid, b.x, w->ctx, err) ||
        dispatch_routing(w, layer, d, kmax, b.idx, b.wt, err))
        goto done;
    t1 = link_now();
    expert_t **ex = w->experts + (size_t)layer * w->n_experts;
    if ((each ? expert_group_apply_each : expert_group_apply)(ex, w->n_experts, b.x, rows, hid, kmax, b.idx, b.wt,
                                                              b.y, NULL, err))
        goto done;
    if (each) nvec = compact_each(b.y, d, kmax, hid);
    t2 = link_now();
    size_t cap = codec_max_encoded(&w->ccodec, (int)nvec, hid), len = 0;
    if (!(b.enc = malloc(cap + 1))) { spex_fail(err, "out of memory"); goto done; }
    if (codec_encode(&w->ccodec, b.y, (int)nvec, hid, b.enc, cap, &len, w->ctx, err)) goto done;
    c.layer = d->layer;
    c.vectors = (uint32_t)nvec;
    c.codec = w->cname;
    c.decode_seconds = t1 - t0;
    c.compute_seconds = t2 - t1;
    c.encode_seconds = link_now() - t2;
    out.step = h->step;
    out.body_case = SPEX__HEADER__BODY_COMBINE;
    out.combine = &c;
    w->st.busy_seconds += link_now() - t0;
    rc = reply_frame(&out, b.enc, len, reply, reply_len, err);
done:
    dispatch_buf_free(&b);
    return rc;
}

/* ------------------------------------------------------------ the rest */

static uint64_t max_rss_bytes(void) {
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) == 0 ? (uint64_t)ru.ru_maxrss * 1024u : 0;
}

static int on_stats(worker_t *w, uint64_t step, uint8_t **reply, size_t *reply_len, spex_err_t *err) {
    Spex__Header out = SPEX__HEADER__INIT;
    Spex__Stats s = w->st;
    s.max_rss_bytes = max_rss_bytes();
    out.step = step;
    out.body_case = SPEX__HEADER__BODY_STATS;
    out.stats = &s;
    return reply_frame(&out, NULL, 0, reply, reply_len, err);
}

static int on_shutdown(worker_t *w, uint64_t step, uint8_t **reply, size_t *reply_len, spex_err_t *err) {
    Spex__Header out = SPEX__HEADER__INIT;
    Spex__Shutdown s = SPEX__SHUTDOWN__INIT;
    w->in_session = false;
    out.step = step;
    out.body_case = SPEX__HEADER__BODY_SHUTDOWN;
    out.shutdown = &s;
    return reply_frame(&out, NULL, 0, reply, reply_len, err);
}

int worker_handle(worker_t *w, const uint8_t *msg, size_t len, uint8_t **reply, size_t *reply_len, bool *shutdown,
                  spex_err_t *err) {
    *reply = NULL;
    *reply_len = 0;
    *shutdown = false;
    wire_header_t *h = NULL;
    const uint8_t *pl;
    size_t plen;
    spex_err_t e = {{0}};
    w->st.messages_in++;
    w->st.bytes_in += len;
    if (wire_unpack(msg, len, 0, &h, &pl, &plen, &e)) return reply_error(w, 0, e.msg, reply, reply_len, err);
    int rc = 0;
    switch (h->body_case) {
    case SPEX__HEADER__BODY_HELLO: rc = on_hello(w, h, reply, reply_len, err); break;
    case SPEX__HEADER__BODY_DISPATCH:
        if (dispatch_check(w, h->dispatch, &e) || run_dispatch(w, h, pl, plen, reply, reply_len, &e))
            rc = reply_error(w, h->step, e.msg, reply, reply_len, err);
        break;
    case SPEX__HEADER__BODY_STATS_REQUEST: rc = on_stats(w, h->step, reply, reply_len, err); break;
    case SPEX__HEADER__BODY_BYE: w->in_session = false; break;
    case SPEX__HEADER__BODY_SHUTDOWN:
        *shutdown = true;
        rc = on_shutdown(w, h->step, reply, reply_len, err);
        break;
    default:
        snprintf(e.msg, sizeof e.msg, "unexpected %s message from the coordinator", wire_body_name(h));
        rc = reply_error(w, h->step, e.msg, reply, reply_len, err);
    }
    if (*reply) {
        w->st.messages_out++;
        w->st.bytes_out += *reply_len;
    }
    wire_header_free(h);
    return rc;
}
