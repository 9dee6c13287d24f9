/* worker.c - see worker.h: the worker side of each message. */
#include "worker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "core/checkpoint.h"
#include "core/arena.h"
#include "core/clock.h"
#include "core/config.h"
#include "core/expert_shard.h"
#include "core/log.h"
#include "core/model_id.h"
#include "core/safetensors.h"
#include "transport/codec.h"
#include "transport/expert_digest.h"
#include "transport/wire.h"

struct worker {
    int rank;
    char *dir;
    spex_config_t cfg;
    tensor_store_t *ts;
    uint64_t model_id;
    int n_layers, n_experts, hidden;
    expert_shard_t *shard;   /* the hosted experts (NULL before a hello) */
    threadpool_t *pool;      /* threads for the experts */
    exec_t ex;
    arena_t rows;            /* decoded rows + combine vectors, grow-only */
    bool in_session;
    codec_t dcodec, ccodec;
    char dname[64], cname[64];
    int combine;             /* SPEX__COMBINE_MODE__* */
    codec_ctx_t *ctx;
    Spex__Stats st;          /* session totals */
    char *refusal;           /* set: no model, refuse every hello with this */
    uint64_t *digests;       /* [n_layers * n_experts] content digests computed so far (0: not yet) */
    void (*progress)(void *user, int done, int total);
    void *progress_user;
};

/* ------------------------------------------------------------ lifetime */

worker_t *worker_create(const char *dir, int rank, int threads, spex_err_t *err) {
    worker_t *w = calloc(1, sizeof *w);
    if (!w) { spex_fail(err, "rank %d: out of memory", rank); return NULL; }
    w->rank = rank;
    w->dir = strdup(dir);
    if (!(w->ts = checkpoint_open(dir, &w->cfg, err)) || model_identity(dir, w->ts, &w->model_id, err)) goto fail;
    w->n_layers = w->cfg.num_hidden_layers + w->cfg.num_nextn_predict_layers;
    w->n_experts = w->cfg.n_routed_experts;
    w->hidden = w->cfg.hidden_size;
    if (!w->dir || !(w->ctx = codec_ctx_create(err))) {
        spex_fail(err, "out of memory");
        goto fail;
    }
    if (matmul_fp_env_check(err) ||   /* before the pool: its threads inherit the environment */
        !(w->pool = threadpool_create(threads > 0 ? threads : threadpool_default_threads(), err)))
        goto fail;
    w->ex = (exec_t){w->pool, simd_detect(), -1};
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
    expert_shard_free(w->shard);
    w->shard = NULL;
}

static uint64_t weight_bytes(const worker_t *w) { return w->shard ? expert_shard_bytes(w->shard) : 0; }

static int n_hosted(const worker_t *w) {
    int n = 0;
    if (w->shard) expert_shard_ids(w->shard, &n);
    return n;
}

void worker_free(worker_t *w) {
    if (!w) return;
    unload_experts(w);
    threadpool_free(w->pool);
    arena_free(&w->rows);
    codec_ctx_free(w->ctx);
    tensor_store_free(w->ts);
    free(w->digests);
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

/* want[n_layers * n_experts] from the hello: per-layer lists if any, else `experts` everywhere. */
static int hello_hosted(const worker_t *w, const Spex__Hello *m, bool *want, spex_err_t *err) {
    size_t E = (size_t)w->n_experts;
    if (m->n_layer_experts == 0) {
        for (size_t i = 0; i < m->n_experts; i++) {
            if (m->experts[i] >= E) return spex_fail(err, "hello: expert %u out of range", m->experts[i]);
            for (int l = 0; l < w->n_layers; l++) want[l * E + m->experts[i]] = true;
        }
        return 0;
    }
    for (size_t j = 0; j < m->n_layer_experts; j++) {
        const Spex__LayerExperts *le = m->layer_experts[j];
        if (le->layer >= (uint32_t)w->n_layers) return spex_fail(err, "hello: layer %u out of range", le->layer);
        for (size_t i = 0; i < le->n_experts; i++) {
            if (le->experts[i] >= E) return spex_fail(err, "hello: layer %u: expert %u out of range", le->layer, le->experts[i]);
            want[le->layer * E + le->experts[i]] = true;
        }
    }
    return 0;
}

static int load_experts(worker_t *w, const bool *want, spex_err_t *err) {
    if (w->shard) {   /* a new session over the same shard: keep the weights */
        const bool *have = expert_shard_hosted(w->shard);
        bool same = true;
        for (int l = 0; l < w->n_layers && same; l++)
            if (config_layer_is_moe(&w->cfg, l))
                same = !memcmp(have + (size_t)l * w->n_experts, want + (size_t)l * w->n_experts, (size_t)w->n_experts);
        if (same) return 0;
    }
    unload_experts(w);
    w->shard = expert_shard_create_layers(&w->cfg, w->ts, want, w->progress, w->progress_user, err);
    if (!w->shard) spex_err_prefix(err, "hello: ");
    return w->shard ? 0 : -1;
}

/* This worker's digest of (layer l, expert e), computed once over its own files. */
static int pair_digest(worker_t *w, int l, int e, expert_digest_buf_t *buf, uint64_t *d, spex_err_t *err) {
    size_t slots = (size_t)w->n_layers * (size_t)w->n_experts, i = (size_t)l * w->n_experts + e;
    if (!w->digests && !(w->digests = calloc(slots, sizeof *w->digests)))
        return spex_fail(err, "out of memory for expert digests");
    if (!w->digests[i] && expert_digest_one(w->ts, l, e, buf, &w->digests[i], NULL, err)) return -1;
    *d = w->digests[i];
    return 0;
}

/* The hello's content digests against this worker's files, pair by pair in
 * ascending (layer, expert) order (none sent: not checked). */
static int check_digests(worker_t *w, const Spex__Hello *m, const bool *want, spex_err_t *err) {
    if (m->n_expert_digests == 0) return 0;
    size_t k = 0, differ = 0;
    int first_l = -1, first_e = -1, rc = 0;
    expert_digest_buf_t buf = {0};
    for (int l = 0; l < w->n_layers && !rc; l++)
        for (int e = 0; e < w->n_experts && config_layer_is_moe(&w->cfg, l); e++) {
            uint64_t d = 0;
            if (!want[(size_t)l * w->n_experts + e]) continue;
            if (k >= m->n_expert_digests) rc = spex_fail(err, "hello: %zu expert digests for more pairs", k);
            if (rc || (rc = pair_digest(w, l, e, &buf, &d, err))) break;
            if (d != m->expert_digests[k++] && differ++ == 0) first_l = l, first_e = e;
        }
    expert_digest_buf_free(&buf);
    if (rc) return -1;
    if (k != m->n_expert_digests) return spex_fail(err, "hello: %zu expert digests for %zu hosted pairs", m->n_expert_digests, k);
    if (differ)
        return spex_fail(err, "expert weights differ from the coordinator's: layer %d expert %d (and %zu more of %zu "
                         "pairs) has other bytes under the same headers (checkpoint '%s' is not the coordinator's "
                         "model)", first_l, first_e, differ - 1, k, w->dir);
    return 0;
}

/* Hosted pairs from the hello, checked against the coordinator's digests, then loaded. */
static int take_experts(worker_t *w, const Spex__Hello *m, spex_err_t *err) {
    size_t slots = (size_t)w->n_layers * (size_t)(w->n_experts > 0 ? w->n_experts : 1);
    bool *want = calloc(slots, sizeof *want);
    if (!want) return spex_fail(err, "out of memory loading experts");
    int rc = hello_hosted(w, m, want, err) || check_digests(w, m, want, err) || load_experts(w, want, err) ? -1 : 0;
    free(want);
    return rc;
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
    if (!bad && take_experts(w, m, &e)) bad = e.msg;
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
        w->st.weight_bytes = weight_bytes(w);
    }
    ack.experts_loaded = (uint32_t)n_hosted(w);
    ack.weight_bytes = weight_bytes(w);
    out.step = h->step;
    out.body_case = SPEX__HEADER__BODY_HELLO_ACK;
    out.hello_ack = &ack;
    return reply_frame(&out, NULL, 0, reply, reply_len, err);
}

/* ------------------------------------------------------------ dispatch */

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

/* Decode the rows, run the shard on the wire's CSR routing as it arrived,
 * encode the answer straight from the shard's output. */
static int run_dispatch(worker_t *w, const Spex__Header *h, const uint8_t *pl, size_t plen, uint8_t **reply,
                        size_t *reply_len, spex_err_t *err) {
    const Spex__Dispatch *d = h->dispatch;
    int rows = (int)d->rows, hid = w->hidden, layer = (int)d->layer;
    bool each = d->combine == SPEX__COMBINE_MODE__COMBINE_EXPERT;
    expert_rows_t r = {.n = rows, .counts = d->counts, .experts = d->experts, .weights = d->weights};
    size_t pairs = 0;
    if (d->n_counts != d->rows) return spex_fail(err, "dispatch: %zu row counts for %u rows", d->n_counts, d->rows);
    pairs = expert_rows_pairs(&r);
    if (d->n_experts != pairs || d->n_weights != pairs)
        return spex_fail(err, "dispatch: %zu experts and %zu weights for %zu routed pairs", d->n_experts,
                         d->n_weights, pairs);
    size_t nvec = each ? pairs : (size_t)rows;
    float *x = arena_floats(&w->rows, ((size_t)rows + nvec) * hid), *y = x ? x + (size_t)rows * hid : NULL;
    wire_out_t o = {0};
    Spex__Header out = SPEX__HEADER__INIT;
    Spex__Combine c = SPEX__COMBINE__INIT;
    int rc = -1;
    double t0 = spex_now(), t1, t2;
    if (!x) return spex_fail(err, "out of memory for %d rows", rows);
    r.x = x;
    if (codec_decode(&w->dcodec, pl, plen, rows, hid, x, w->ctx, err)) goto done;
    t1 = spex_now();
    if (!w->shard) { spex_fail(err, "dispatch before any expert is loaded"); goto done; }
    if (expert_shard_apply(w->shard, &w->ex, layer, &r, !each, y, NULL, err)) {
        spex_err_prefix(err, "dispatch ");
        goto done;
    }
    t2 = spex_now();
    /* The answer is encoded straight into its frame (wire_begin/wire_end): the
     * header is sized first, with every field present (times are never 0). */
    c.layer = d->layer;
    c.vectors = (uint32_t)nvec;
    c.codec = w->cname;
    c.decode_seconds = t1 - t0 > 0 ? t1 - t0 : 1e-9;
    c.compute_seconds = t2 - t1 > 0 ? t2 - t1 : 1e-9;
    c.encode_seconds = 1e-9;
    out.step = h->step;
    out.body_case = SPEX__HEADER__BODY_COMBINE;
    out.combine = &c;
    size_t cap = codec_max_encoded(&w->ccodec, (int)nvec, hid), len = 0;
    uint8_t *dst = wire_begin(&o, &out, cap, err);
    if (!dst || codec_encode(&w->ccodec, y, (int)nvec, hid, dst, cap, &len, w->ctx, err)) goto done;
    double t3 = spex_now();
    if (t3 - t2 > 0) c.encode_seconds = t3 - t2;
    w->st.busy_seconds += t3 - t0;
    rc = wire_end(&o, &out, len, reply, reply_len, err);
done:
    wire_out_free(&o);
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
