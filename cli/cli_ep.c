/* cli_ep.c - see cli_ep.h. */
#include "cli_ep.h"

#include <stdlib.h>
#include <string.h>

#include "cli/cli_util.h"
#include "coordinator/ep/ep_backend.h"
#include "coordinator/ep/expert_manifest.h"
#include "core/log.h"
#include "core/model_id.h"
#include "transport/codec.h"
#include "transport/mpi_world.h"
#include "worker/worker.h"

void cli_ep_init(cli_ep_t *ep) {
    memset(ep, 0, sizeof *ep);
    ep->combine = -1;
    ep->overlap = -1;
    ep->rank_timeout = CLI_EP_DEFAULT_TIMEOUT;
    ep->idle_timeout = CLI_EP_DEFAULT_IDLE;
}

/* A codec option's value, checked now so that a typo is a usage error (exit 2). */
static int codec_ok(const char *v, char *msg, size_t len) {
    codec_t c;
    spex_err_t err = {{0}};
    if (codec_parse(v, &c, &err) == 0) return 0;
    snprintf(msg, len, "%s", err.msg);
    return -1;
}

static const cli_option_t EP_OPTIONS[] = {
    CLI_OPT_STRING("--placement", "FILE", cli_ep_t, placement,
                   "expert -> rank(s) table, JSON\n{\"placement\": [rank or [ranks] per expert]}"),
    CLI_OPT_STRING("--placement-policy", "P", cli_ep_t, policy, "contiguous (default) | round-robin"),
    CLI_OPT_CHECKED("--codec", "SPEC", cli_ep_t, codec, codec_ok,
                    "payload codec: raw | bf16 | fp8, each optionally\n+zstd[:level] (default raw)"),
    CLI_OPT_CHECKED("--dispatch-codec", "SPEC", cli_ep_t, dispatch_codec, codec_ok, "codec coordinator -> workers"),
    CLI_OPT_CHECKED("--combine-codec", "SPEC", cli_ep_t, combine_codec, codec_ok, "codec workers -> coordinator"),
    CLI_OPT_ENUM("--combine", "MODE", cli_ep_t, combine, CLI_EP_COMBINE,
                 "expert: exact for any placement (default for\nlossless codecs); presum: per-rank sums"),
    CLI_OPT_DOUBLE("--rank-timeout", "SEC", cli_ep_t, rank_timeout, 0.01, 1e6, "coordinator's wait for a worker"),
    CLI_OPT_DOUBLE("--idle-timeout", "SEC", cli_ep_t, idle_timeout, 0, 1e9,
                   "worker's wait for the coordinator (0 = forever)"),
    CLI_OPT_DOUBLE("--link-delay-ms", "D", cli_ep_t, link_delay_ms, 0, 1e4,
                   "EMULATION: every rank holds each message it sends\nD ms before sending (latency for studies on one\nmachine; default 0)"),
    CLI_OPT_STRING("--ep-stats", "FILE", cli_ep_t, stats,
                   "bytes / messages / time / expert load as JSON,\nsummary on stderr"),
    CLI_OPT_INT("--loopback-ranks", NULL, "N", cli_ep_t, loopback_ranks, 1, 256,
                "without mpirun: N in-process worker ranks behind\nthe real wire (tests; default: experts in-process)"),
    CLI_OPT_FLAG("--no-ep", cli_ep_t, no_ep, "without mpirun: experts in-process, no codec or\nmessages (the default)"),
    CLI_OPT_ENUM("--overlap", "on|off", cli_ep_t, overlap, CLI_EP_OVERLAP,
                 "micro-batches: attention / shared experts run\nwhile rows are with the workers (same bits;\n"
                 "default: on under mpirun for steps of 32+ rows,\noff in one process)"),
};

static const cli_option_t COMPUTE_OPTIONS[] = {
    CLI_OPT_INT("--threads", NULL, "N", cli_ep_t, threads, 1, 1024,
                "threads (default: the cores this process may use,\ndivided by the ranks on this node)"),
    CLI_OPT_ENUM("--simd", "PATH", cli_ep_t, simd, CLI_SIMD_CHOICES,
                 "kernel path (default auto = widest this CPU\nruns); every path gives the same bits"),
    CLI_OPT_ENUM("--weights", "MODE", cli_ep_t, weights, CLI_WEIGHTS_CHOICES,
                 "copy: weights in anonymous huge pages (default,\nfaster); mmap: used in place from the page cache"),
    CLI_OPT_FLAG("--prefault", cli_ep_t, prefault, "with --weights mmap: touch every page at load"),
    CLI_OPT_DOUBLE("--bias-update-rate", "G", cli_ep_t, bias_rate, 0, 1,
                   "dynamic routing bias: every window, each expert's\nselection bias moves by G towards balance (DeepSeek-\nV3's aux-loss-free rule); changes outputs"),
    CLI_OPT_INT("--bias-update-window", NULL, "N", cli_ep_t, bias_window, 1, 1L << 30,
                "rows routed per MoE layer between updates (256)"),
};

cli_group_t cli_compute_group(cli_ep_t *ep) {
    return (cli_group_t)CLI_GROUP("compute", COMPUTE_OPTIONS, ep);
}

void cli_compute_apply(const cli_ep_t *ep, model_options_t *opt) {
    static const char *const SIMD[] = {"auto", "avx512", "avx2", "portable"};
    opt->threads = (int)ep->threads;
    opt->simd = SIMD[ep->simd >= 0 && ep->simd < 4 ? ep->simd : 0];
    opt->residency = (tensor_residency_t){.copy = ep->weights == 0, .prefault = ep->prefault};
}

cli_group_t cli_ep_group(cli_ep_t *ep) {
    return (cli_group_t)CLI_GROUP("expert parallelism (mpirun -np N spex ...: rank 0 coordinates, ranks 1..N-1 host "
                                  "the experts)", EP_OPTIONS, ep);
}

/* ------------------------------------------------------------ loading */

static int ep_options(const cli_ep_t *ep, ep_options_t *o, spex_err_t *err) {
    const char *dc = ep->dispatch_codec ? ep->dispatch_codec : ep->codec ? ep->codec : "raw";
    const char *cc = ep->combine_codec ? ep->combine_codec : ep->codec ? ep->codec : "raw";
    if (codec_parse(dc, &o->dispatch, err) || codec_parse(cc, &o->combine, err)) return -1;
    bool lossless = codec_lossless(&o->dispatch) && codec_lossless(&o->combine);
    o->mode = lossless ? EP_COMBINE_EXPERT : EP_COMBINE_PRESUM;
    if (ep->combine >= 0) o->mode = ep->combine == 0 ? EP_COMBINE_EXPERT : EP_COMBINE_PRESUM;
    o->rank_timeout = ep->rank_timeout;
    return 0;
}

static placement_t *ep_placement(const cli_ep_t *ep, int n_experts, int world, spex_err_t *err) {
    placement_policy_t pol = PLACEMENT_CONTIGUOUS;
    if (ep->policy && placement_policy_parse(ep->policy, &pol, err)) return NULL;
    if (ep->placement) return placement_load(ep->placement, n_experts, world, err);
    return placement_balanced(n_experts, world, pol, err);
}

typedef struct loop_workers {
    worker_t **w;   /* [world]: index 0 unused */
    int world;
} loop_workers_t;

static void loop_workers_free(void *user) {
    loop_workers_t *lw = user;
    if (!lw) return;
    for (int r = 0; r < lw->world; r++) worker_free(lw->w[r]);
    free(lw->w);
    free(lw);
}

static int loop_handle(void *user, int rank, const uint8_t *msg, size_t len, uint8_t **reply, size_t *reply_len,
                       spex_err_t *err) {
    loop_workers_t *lw = user;
    bool stop;
    return worker_handle(lw->w[rank], msg, len, reply, reply_len, &stop, err);
}

/* In-process worker ranks 1..world-1 behind a loopback link. */
static link_t *loopback(const char *dir, int world, loop_workers_t **out, spex_err_t *err) {
    loop_workers_t *lw = calloc(1, sizeof *lw);
    if (!lw || !(lw->w = calloc((size_t)world, sizeof *lw->w))) {
        free(lw);
        spex_fail(err, "out of memory");
        return NULL;
    }
    lw->world = world;
    for (int r = 1; r < world; r++)
        if (!(lw->w[r] = worker_create(dir, r, 1, err))) { loop_workers_free(lw); return NULL; }
    link_t *l = link_loop_create(world, loop_handle, lw, err);
    if (!l) { loop_workers_free(lw); return NULL; }
    *out = lw;
    return l;
}

/* Under mpirun: the digests of every expert, for the workers to check their
 * weights against (in-process workers read these very files: not needed). */
static uint64_t *worker_digests(const char *dir, const model_t *m, uint64_t id, spex_err_t *err) {
    expert_manifest_info_t info;
    uint64_t *d = expert_manifest_get(dir, &m->cfg, m->ts, id, &info, err);
    if (d && !info.cached)
        spex_log("expert digests: %.1f MB of routed expert weights hashed in %.3f s%s", (double)info.bytes / 1e6,
                 info.seconds, info.written ? " (cached as " EXPERT_MANIFEST_NAME ")" : "");
    return d;
}

moe_backend_t *cli_ep_backend(const char *dir, model_t *m, const cli_ep_t *ep, int workers, spex_err_t *err) {
    int world = mpi_world_size();
    ep_options_t eo;
    if (ep_options(ep, &eo, err)) return NULL;
    int loops = ep->loopback_ranks > 0 ? (int)ep->loopback_ranks : 1;
    int ew = world > 1 ? world : 1 + (workers > 0 ? workers : loops);
    if (workers <= 0 || workers > ew - 1) workers = ew - 1;
    uint64_t id;
    loop_workers_t *lw = NULL;
    placement_t *pl = NULL;
    link_t *link = NULL;
    uint64_t *digests = NULL;
    if (model_identity(dir, m->ts, &id, err) || !(pl = ep_placement(ep, m->cfg.n_routed_experts, workers + 1, err)))
        goto fail;
    pl->world = ew;   /* ranks above `workers` (if any) host nothing */
    if (world > 1 && !(digests = worker_digests(dir, m, id, err))) goto fail;
    if (!(link = world > 1 ? link_mpi_create(err) : loopback(dir, ew, &lw, err))) goto fail;
    if (!(link = link_delay_wrap(link, ep->link_delay_ms / 1e3, err))) { loop_workers_free(lw); goto fail; }
    eo.expert_digests = digests;
    moe_backend_t *b = ep_backend_create(&m->cfg, id, pl, link, &eo, loop_workers_free, lw, err);
    free(digests);
    return b;
fail:
    free(digests);
    placement_free(pl);
    return NULL;
}

/* The first wire option given, or NULL. */
static const char *wire_option(const cli_ep_t *ep) {
    return ep->placement ? "--placement" : ep->policy ? "--placement-policy" : ep->codec ? "--codec"
         : ep->dispatch_codec ? "--dispatch-codec" : ep->combine_codec ? "--combine-codec"
         : ep->combine >= 0 ? "--combine" : ep->link_delay_ms > 0 ? "--link-delay-ms" : ep->stats ? "--ep-stats (--stats)" : NULL;
}

/* --bias-update-rate on a loaded model; refused with --combine expert, whose
 * promise (results exactly as one process, whatever the batch) it breaks. */
static model_t *with_bias_update(model_t *m, const cli_ep_t *ep, spex_err_t *err) {
    if (!m || ep->bias_rate <= 0) return m;
    if (model_set_bias_update(m, (float)ep->bias_rate, ep->bias_window > 0 ? (int)ep->bias_window : 256, err) == 0)
        return m;
    model_free(m);
    return NULL;
}

static model_t *model_load_ep(const char *dir, model_options_t *opt, cli_ep_t *ep, spex_err_t *err);

model_t *cli_model_load(const char *dir, model_options_t *opt, cli_ep_t *ep, spex_err_t *err) {
    if (ep->bias_rate > 0 && ep->combine == 0) {   /* before loading: nothing to undo */
        spex_fail(err, "--bias-update-rate makes a row's experts depend on the rows routed before it, so results are "
                       "no longer exact; it cannot be combined with --combine expert");
        return NULL;
    }
    return with_bias_update(model_load_ep(dir, opt, ep, err), ep, err);
}

static model_t *model_load_ep(const char *dir, model_options_t *opt, cli_ep_t *ep, spex_err_t *err) {
    int world = mpi_world_size();
    cli_compute_apply(ep, opt);
    const char *wire = wire_option(ep);
    if (world == 1 && ep->no_ep && ep->loopback_ranks > 0) {
        spex_fail(err, "--loopback-ranks has no effect with --no-ep (no expert ranks, no wire)");
        return NULL;
    }
    if (world == 1 && (ep->no_ep || (!wire && ep->loopback_ranks == 0))) {
        if (wire) { spex_fail(err, "%s has no effect with --no-ep (no expert ranks, no wire)", wire); return NULL; }
        opt->local_experts = true;
        model_t *m = model_load(dir, opt, err);
        if (m) m->overlap_min_rows = cli_ep_overlap(ep, m->experts);
        return m;
    }
    if (world > 1 && ep->no_ep) { spex_fail(err, "--no-ep: only without mpirun (this job has %d ranks)", world); return NULL; }
    ep_options_t eo;
    if (ep_options(ep, &eo, err)) return NULL;   /* bad codec: fail before loading anything */
    opt->local_experts = false;
    model_t *m = model_load(dir, opt, err);
    if (!m || m->cfg.n_routed_experts == 0) return m;
    moe_backend_t *b = cli_ep_backend(dir, m, ep, 0, err);
    if (!b) { model_free(m); return NULL; }
    model_set_experts(m, b);
    m->overlap_min_rows = cli_ep_overlap(ep, b);
    ep->backend = b;
    return m;
}

int cli_ep_overlap(const cli_ep_t *ep, const moe_backend_t *backend) {
    if (ep->overlap >= 0) return ep->overlap == 0 ? 1 : 0;
    return backend && ep_backend_stats((moe_backend_t *)backend) && mpi_world_size() > 1 ? CLI_EP_OVERLAP_MIN_ROWS : 0;
}

char *cli_ep_stats_json(cli_ep_t *ep, spex_err_t *err) {
    ep_stats_t *st = ep->backend ? ep_backend_stats(ep->backend) : NULL;
    if (!st) return NULL;
    if (ep_backend_fetch_worker_stats(ep->backend, err)) return NULL;
    char *text = ep_stats_json_text(st);
    if (!text) spex_fail(err, "stats: out of memory");
    return text;
}

void cli_ep_print_stats(const cli_ep_t *ep, FILE *f) {
    ep_stats_t *st = ep->backend ? ep_backend_stats(ep->backend) : NULL;
    if (st) ep_stats_print(st, f);
}

int cli_ep_finish(const char *cmd, cli_ep_t *ep) {
    if (!ep->stats || !ep->backend) return 0;
    spex_err_t err = {{0}};
    ep_stats_t *st = ep_backend_stats(ep->backend);
    if (ep_backend_fetch_worker_stats(ep->backend, &err) || ep_stats_write_json(st, ep->stats, &err)) {
        cli_error(cmd, "%s", err.msg);
        return -1;
    }
    ep_stats_print(st, stderr);
    return 0;
}
