/* cli_ep.c - see cli_ep.h. */
#include "cli_ep.h"

#include <stdlib.h>
#include <string.h>

#include "cli/cli_util.h"
#include "coordinator/ep_backend.h"
#include "core/model_id.h"
#include "transport/codec.h"
#include "transport/mpi_world.h"
#include "worker/worker.h"

void cli_ep_init(cli_ep_t *ep) {
    memset(ep, 0, sizeof *ep);
    ep->rank_timeout = CLI_EP_DEFAULT_TIMEOUT;
    ep->loopback_ranks = 1;
}

/* A codec option's value, checked now so that a typo is a usage error (exit 2). */
static int codec_opt(int argc, char **argv, int *i, const char *name, const char **dst) {
    int r = cli_opt(argc, argv, i, name, dst);
    if (r <= 0) return r;
    codec_t c;
    spex_err_t err = {{0}};
    if (codec_parse(*dst, &c, &err)) { cli_error("options", "%s: %s", name, err.msg); return -1; }
    return 1;
}

int cli_ep_opt(int argc, char **argv, int *i, cli_ep_t *ep) {
    const char *v;
    int r;
    if ((r = codec_opt(argc, argv, i, "--codec", &ep->codec)) ||
        (r = codec_opt(argc, argv, i, "--dispatch-codec", &ep->dispatch_codec)) ||
        (r = codec_opt(argc, argv, i, "--combine-codec", &ep->combine_codec)))
        return r;
    if ((r = cli_opt(argc, argv, i, "--combine", &ep->combine))) {
        if (r > 0 && strcmp(ep->combine, "expert") && strcmp(ep->combine, "presum")) {
            cli_error("options", "--combine: expected expert or presum, got '%s'", ep->combine);
            return -1;
        }
        return r;
    }
    if ((r = cli_opt(argc, argv, i, "--placement", &ep->placement)) ||
        (r = cli_opt(argc, argv, i, "--placement-policy", &ep->policy)) ||
        (r = cli_opt(argc, argv, i, "--ep-stats", &ep->stats)))
        return r;
    if ((r = cli_opt(argc, argv, i, "--rank-timeout", &v)))
        return r < 0 || cli_parse_double("--rank-timeout", v, 0.01, 1e6, &ep->rank_timeout) ? -1 : 1;
    if ((r = cli_opt(argc, argv, i, "--idle-timeout", &v))) {
        double d;   /* read by the workers (cli_ep_main); checked here */
        return r < 0 || cli_parse_double("--idle-timeout", v, 0, 1e9, &d) ? -1 : 1;
    }
    if ((r = cli_opt(argc, argv, i, "--loopback-ranks", &v)))
        return r < 0 || cli_parse_int("--loopback-ranks", v, 1, 256, &ep->loopback_ranks) ? -1 : 1;
    if (!strcmp(argv[*i], "--no-ep")) { ep->no_ep = true; return 1; }
    return 0;
}

void cli_ep_usage(FILE *f) {
    fprintf(f,
            "expert parallelism (mpirun -np N spex ...: rank 0 coordinates, ranks 1..N-1 host the experts):\n"
            "  --placement FILE          expert -> rank(s) table, JSON {\"placement\": [rank or [ranks] per expert]}\n"
            "  --placement-policy P      contiguous (default) | round-robin\n"
            "  --codec SPEC              payload codec: raw | bf16 | fp8, each optionally +zstd[:level] (default raw)\n"
            "  --dispatch-codec SPEC, --combine-codec SPEC   per direction\n"
            "  --combine MODE            expert (exact for any placement; default for lossless codecs) | presum\n"
            "  --rank-timeout SEC        coordinator's wait for a worker (default %.0f)\n"
            "  --idle-timeout SEC        worker's wait for the coordinator (default %.0f, 0 = forever)\n"
            "  --ep-stats FILE           bytes / messages / time / expert load as JSON, summary on stderr\n"
            "  --loopback-ranks N        without mpirun: N in-process worker ranks (default 1)\n"
            "  --no-ep                   without mpirun: experts in-process, no codec or messages\n",
            CLI_EP_DEFAULT_TIMEOUT, CLI_EP_DEFAULT_IDLE);
}

/* ------------------------------------------------------------ loading */

static int ep_options(const cli_ep_t *ep, ep_options_t *o, spex_err_t *err) {
    const char *dc = ep->dispatch_codec ? ep->dispatch_codec : ep->codec ? ep->codec : "raw";
    const char *cc = ep->combine_codec ? ep->combine_codec : ep->codec ? ep->codec : "raw";
    if (codec_parse(dc, &o->dispatch, err) || codec_parse(cc, &o->combine, err)) return -1;
    bool lossless = codec_lossless(&o->dispatch) && codec_lossless(&o->combine);
    o->mode = lossless ? EP_COMBINE_EXPERT : EP_COMBINE_PRESUM;
    if (ep->combine && !strcmp(ep->combine, "expert")) o->mode = EP_COMBINE_EXPERT;
    else if (ep->combine && !strcmp(ep->combine, "presum")) o->mode = EP_COMBINE_PRESUM;
    else if (ep->combine) return spex_fail(err, "--combine: expected expert or presum, got '%s'", ep->combine);
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

moe_backend_t *cli_ep_backend(const char *dir, model_t *m, const cli_ep_t *ep, int workers, spex_err_t *err) {
    int world = mpi_world_size();
    ep_options_t eo;
    if (ep_options(ep, &eo, err)) return NULL;
    int ew = world > 1 ? world : 1 + (workers > 0 ? workers : (int)ep->loopback_ranks);
    if (workers <= 0 || workers > ew - 1) workers = ew - 1;
    uint64_t id;
    loop_workers_t *lw = NULL;
    placement_t *pl = NULL;
    link_t *link = NULL;
    if (model_identity(dir, m->ts, &id, err) || !(pl = ep_placement(ep, m->cfg.n_routed_experts, workers + 1, err)))
        goto fail;
    pl->world = ew;   /* ranks above `workers` (if any) host nothing */
    if (!(link = world > 1 ? link_mpi_create(err) : loopback(dir, ew, &lw, err))) goto fail;
    return ep_backend_create(&m->cfg, id, pl, link, &eo, loop_workers_free, lw, err);
fail:
    placement_free(pl);
    return NULL;
}

model_t *cli_model_load(const char *dir, model_options_t *opt, cli_ep_t *ep, spex_err_t *err) {
    int world = mpi_world_size();
    if (world == 1 && ep->no_ep) {
        const char *wire = ep->placement ? "--placement" : ep->policy ? "--placement-policy" : ep->codec ? "--codec"
                         : ep->dispatch_codec ? "--dispatch-codec" : ep->combine_codec ? "--combine-codec"
                         : ep->combine ? "--combine" : ep->stats ? "--ep-stats (--stats)" : NULL;
        if (wire) { spex_fail(err, "%s has no effect with --no-ep (no expert ranks, no wire)", wire); return NULL; }
        opt->local_experts = true;
        return model_load(dir, opt, err);
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
    ep->backend = b;
    return m;
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
