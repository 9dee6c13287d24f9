/* cmd_bench_ep.c - `spex bench ep`: what expert parallelism costs and buys.
 *
 *   mpirun -np 5 spex bench ep --model DIR [--ranks 1,2,3,4] [--prompt N] [--decode N]
 *                              [--codecs raw,raw+zstd,...] [--reps 3] [--csv FILE]
 * First a baseline with every expert in the coordinator (workers 0: no codec,
 * no messages, as --no-ep). Then for each number of worker ranks W (experts balanced over ranks 1..W; the
 * job's other ranks idle) it runs, on one random prompt:
 *   - throughput with the exact default (raw, --combine expert): one prefill of
 *     N tokens (tokens/s) and `--decode` single-token steps through the KV cache
 *     (tokens/s), with the coordinator's time split: attention (MLA),
 *     other (dense and shared FFN, routers, head), dispatch, wait (incl. the
 *     expert critical path, shown separately as expert), combine; in process
 *     (workers 0) expert is the routed experts' own compute;
 *   - for every codec and both combine modes: one prefill, reporting wire bytes
 *     per token (dispatch + combine over all MoE layers), the f32 bytes they
 *     replace, the ratio, and the prefill tokens/s.
 * Without mpirun the ranks are in-process loopback ranks (same bytes; the
 * compute is serial). Each figure is the fastest of --reps runs. Prints a
 * Markdown table and, with --csv, one CSV row per measurement. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "cli/cli_ep.h"
#include "cli/cli_util.h"
#include "cli/commands.h"
#include "coordinator/ep/ep_backend.h"
#include "coordinator/model/experts_local.h"
#include "coordinator/model/kv_cache.h"
#include "transport/mpi_world.h"

#define MAX_LIST 16

typedef struct bep_opts {
    const char *dir, *csv;
    cli_list_t ranks;          /* worker counts */
    const char *codec_list;    /* --codecs, split into codecs[] */
    const char *codecs[MAX_LIST];
    int n_codecs;
    long prompt, decode, reps;
    char codec_buf[512];
} bep_opts_t;

typedef struct bep_run {      /* one measured phase */
    int workers;
    const char *codec, *mode, *phase;
    long tokens;
    double seconds;
    ep_layer_stats_t d;       /* stats delta over the phase */
    double attention;         /* MLA incl. norms (model_timing_t) */
    double other;             /* dense + shared FFN, routers, head, glue */
} bep_run_t;

static const cli_option_t BEP_OPTIONS[] = {
    CLI_OPT_LIST("--ranks", "W,W,...", bep_opts_t, ranks, 1, 4096, "worker counts to measure"),
    CLI_OPT_INT("--prompt", NULL, "N", bep_opts_t, prompt, 1, 1 << 16, "prefill tokens"),
    CLI_OPT_INT("--decode", NULL, "N", bep_opts_t, decode, 0, 1 << 16, "single-token decode steps"),
    CLI_OPT_INT("--reps", NULL, "R", bep_opts_t, reps, 1, 100, "runs per figure (the fastest is kept)"),
    CLI_OPT_STRING("--codecs", "C,C,...", bep_opts_t, codec_list, "codecs to measure"),
    CLI_OPT_STRING("--csv", "FILE", bep_opts_t, csv, "one CSV row per measurement too"),
};

/* -1 to go on, else the exit status. */
static int bep_parse(int argc, char **argv, bep_opts_t *o) {
    *o = (bep_opts_t){.prompt = 64, .decode = 16, .reps = 3, .ranks = {{1, 2, 3, 4}, 4},
                      .codec_list = "raw,raw+zstd,bf16,bf16+zstd,fp8,fp8+zstd"};
    cli_group_t groups[] = {cli_model_group(&o->dir), CLI_GROUP(NULL, BEP_OPTIONS, o)};
    cli_spec_t spec = CLI_SPEC("bench ep", "bench ep --model DIR [options]   (under mpirun -np N too)",
                               "Expert parallelism: prefill/decode tokens/s, wire bytes per token per codec, time split.",
                               groups);
    int rc = cli_run_parse(&spec, argc, argv, 2);
    if (rc >= 0) return rc;
    snprintf(o->codec_buf, sizeof o->codec_buf, "%s", o->codec_list);
    for (char *t = strtok(o->codec_buf, ","); t && o->n_codecs < MAX_LIST; t = strtok(NULL, ",")) o->codecs[o->n_codecs++] = t;
    return o->n_codecs ? -1 : cli_usage_error(&spec, "--codecs: no codec given");
}

static ep_layer_stats_t delta(ep_layer_stats_t a, ep_layer_stats_t b) {
    ep_layer_stats_t d = b;
    d.calls -= a.calls, d.rows -= a.rows, d.pairs -= a.pairs;
    d.dispatch.messages -= a.dispatch.messages, d.dispatch.raw_bytes -= a.dispatch.raw_bytes;
    d.dispatch.wire_bytes -= a.dispatch.wire_bytes;
    d.combine.messages -= a.combine.messages, d.combine.raw_bytes -= a.combine.raw_bytes;
    d.combine.wire_bytes -= a.combine.wire_bytes;
    d.t_dispatch -= a.t_dispatch, d.t_wait -= a.t_wait, d.t_combine -= a.t_combine, d.t_expert -= a.t_expert;
    return d;
}

/* Prefill `n` tokens in one call or decode them one by one into a fresh
 * cache; time and stats delta. */
static int phase(model_t *m, const int32_t *tok, int n, int prefix, bool decode, bep_run_t *run, spex_err_t *err) {
    kv_cache_t *kv = kv_cache_create(model_cache_layers(m), m->cfg.kv_lora_rank, m->cfg.qk_rope_head_dim, prefix + n, err);
    float *logits = malloc(sizeof(float) * (size_t)(decode ? 1 : n) * m->cfg.vocab_size);
    int rc = -1;
    if (!kv || !logits) { if (kv) spex_fail(err, "out of memory"); goto done; }
    if (prefix > 0) {   /* the decode steps continue a prompt */
        mla_seq_t s = {kv, prefix};
        if (model_forward(m, tok, &s, 1, NULL, NULL, NULL, err)) goto done;
    }
    ep_stats_t *st = ep_backend_stats(m->experts);   /* NULL: in-process experts */
    ep_layer_stats_t before = st ? ep_stats_total(st) : (ep_layer_stats_t){0};
    model_timing_t tm0 = m->timing;
    double t0 = spex_now();
    for (int i = 0; i < n; i += decode ? 1 : n) {
        mla_seq_t s = {kv, decode ? 1 : n};
        if (model_forward(m, tok + prefix + i, &s, 1, NULL, NULL, logits, err)) goto done;
    }
    run->seconds = spex_now() - t0;
    run->tokens = n;
    run->d = st ? delta(before, ep_stats_total(st)) : before;
    run->attention = m->timing.attention - tm0.attention;
    if (!st) run->d.t_expert = m->timing.routed - tm0.routed;   /* in process: the experts themselves */
    run->other = run->seconds - run->attention - run->d.t_dispatch - run->d.t_wait - run->d.t_combine -
                 (st ? 0 : run->d.t_expert);
    rc = 0;
done:
    kv_cache_free(kv);
    free(logits);
    return rc;
}

/* The fastest of `reps` runs of phase() (the machine is shared: the minimum
 * is the least disturbed measurement; the first run also pays warm-up). */
static int best_phase(model_t *m, const bep_opts_t *o, const int32_t *tok, bool decode, bep_run_t *run, spex_err_t *err) {
    bep_run_t best = *run, r = *run;
    for (long i = 0; i < o->reps; i++) {
        if (decode ? phase(m, tok, (int)o->decode, (int)o->prompt, true, &r, err)
                   : phase(m, tok, (int)o->prompt, 0, false, &r, err))
            return -1;
        if (i == 0 || r.seconds < best.seconds) best = r;
    }
    *run = best;
    return 0;
}

/* mode: index in CLI_EP_COMBINE (0 expert, 1 presum). */
static int with_backend(model_t *m, const bep_opts_t *o, int workers, const char *codec, int mode,
                        spex_err_t *err) {
    cli_ep_t ep;
    cli_ep_init(&ep);
    ep.codec = codec;
    ep.combine = mode;
    model_set_experts(m, NULL);   /* the old session ends (bye) before the new hello */
    moe_backend_t *b = cli_ep_backend(o->dir, m, &ep, workers, err);
    if (!b) return -1;
    model_set_experts(m, b);
    return 0;
}

static double per_tok(int64_t bytes, long tokens) { return tokens ? (double)bytes / (double)tokens : 0; }

static void print_run(FILE *f, const bep_run_t *r, bool csv) {
    double wire = per_tok(r->d.dispatch.wire_bytes + r->d.combine.wire_bytes, r->tokens);
    double raw = per_tok(r->d.dispatch.raw_bytes + r->d.combine.raw_bytes, r->tokens);
    if (csv) {
        fprintf(f, "%d,%s,%s,%s,%ld,%.6f,%.2f,%.1f,%.1f,%.1f,%.4f,%.6f,%.6f,%.6f,%.6f,%.6f,%.6f,%lld\n", r->workers,
                r->codec, r->mode, r->phase, r->tokens, r->seconds, r->tokens / r->seconds,
                per_tok(r->d.dispatch.wire_bytes, r->tokens), per_tok(r->d.combine.wire_bytes, r->tokens), raw,
                wire > 0 ? raw / wire : 0, r->attention, r->other, r->d.t_dispatch, r->d.t_expert, r->d.t_combine, r->d.t_wait,
                (long long)(r->d.dispatch.messages + r->d.combine.messages));
        return;
    }
    fprintf(f, "| %d | %-9s | %-6s | %-7s | %8.1f | %9.0f | %9.0f | %9.0f | %5.2f | %5.0f%% | %5.0f%% | %5.0f%% | %5.0f%% | %5.0f%% | %5.0f%% |\n",
            r->workers, r->codec, r->mode, r->phase, r->tokens / r->seconds, per_tok(r->d.dispatch.wire_bytes, r->tokens),
            per_tok(r->d.combine.wire_bytes, r->tokens), raw, wire > 0 ? raw / wire : 0, 100 * r->attention / r->seconds,
            100 * r->other / r->seconds,
            100 * r->d.t_dispatch / r->seconds, 100 * r->d.t_expert / r->seconds, 100 * r->d.t_combine / r->seconds,
            100 * r->d.t_wait / r->seconds);
}

static const char CSV_HEADER[] = "workers,codec,combine,phase,tokens,seconds,tokens_per_s,dispatch_bytes_per_token,"
                                 "combine_bytes_per_token,raw_bytes_per_token,ratio,attention_s,other_s,dispatch_s,expert_s,"
                                 "combine_s,wait_s,messages\n";

static int bench_workers(model_t *m, const bep_opts_t *o, int w, const int32_t *tok, FILE *csv, spex_err_t *err) {
    bep_run_t r = {.workers = w, .codec = "raw", .mode = "expert"};
    if (with_backend(m, o, w, "raw", 0, err)) return -1;
    r.phase = "prefill";
    if (best_phase(m, o, tok, false, &r, err)) return -1;
    print_run(stdout, &r, false);
    if (csv) print_run(csv, &r, true);
    if (o->decode > 0) {
        r.phase = "decode";
        if (best_phase(m, o, tok, true, &r, err)) return -1;
        print_run(stdout, &r, false);
        if (csv) print_run(csv, &r, true);
    }
    static const char *MODES[] = {"expert", "presum"};
    for (int c = 0; c < o->n_codecs; c++)
        for (int md = 0; md < 2; md++) {
            if (c == 0 && md == 0 && !strcmp(o->codecs[c], "raw")) continue;   /* measured above */
            bep_run_t x = {.workers = w, .codec = o->codecs[c], .mode = MODES[md], .phase = "prefill"};
            if (with_backend(m, o, w, o->codecs[c], md, err) || best_phase(m, o, tok, false, &x, err))
                return -1;
            print_run(stdout, &x, false);
            if (csv) print_run(csv, &x, true);
        }
    return 0;
}

/* Baseline: every expert in this process, no codec, no messages (--no-ep). */
static int bench_local(model_t *m, const bep_opts_t *o, const int32_t *tok, FILE *csv, spex_err_t *err) {
    model_set_experts(m, NULL);
    moe_backend_t *b = experts_local_create(&m->cfg, m->ts, &m->ex, err);
    if (!b) return -1;
    model_set_experts(m, b);
    bep_run_t r = {.workers = 0, .codec = "-", .mode = "local"};
    for (int dec = 0; dec < (o->decode > 0 ? 2 : 1); dec++) {
        r.phase = dec ? "decode" : "prefill";
        if (best_phase(m, o, tok, dec, &r, err)) return -1;
        print_run(stdout, &r, false);
        if (csv) print_run(csv, &r, true);
    }
    model_set_experts(m, NULL);
    return 0;
}

int cmd_bench_ep(int argc, char **argv) {
    bep_opts_t o;
    int pr = bep_parse(argc, argv, &o);
    if (pr >= 0) return pr;
    int world = mpi_world_size();
    for (int i = 0; i < o.ranks.n; i++)
        if (world > 1 && o.ranks.v[i] > world - 1) {
            cli_error("bench", "ep: %ld worker ranks asked, the job has %d (mpirun -np %ld)", o.ranks.v[i], world - 1,
                      o.ranks.v[i] + 1);
            return 2;
        }
    spex_err_t err = {{0}};
    model_options_t mo = {.load_mtp = false, .local_experts = false, .progress = cli_progress, .progress_user = "loading model"};
    model_t *m = model_load(o.dir, &mo, &err);
    if (!m) { cli_error("bench", "%s", err.msg); return 1; }
    int total = (int)(o.prompt + o.decode);
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)total);
    uint64_t s = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < total && tok; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        tok[i] = (int32_t)(s % (uint64_t)m->cfg.vocab_size);
    }
    FILE *csv = o.csv ? fopen(o.csv, "w") : NULL;
    int rc = 0;
    if (o.csv && !csv) { cli_error("bench", "cannot write '%s'", o.csv); rc = 1; }
    if (csv) fputs(CSV_HEADER, csv);
    printf("model %s: hidden %d, %d routed experts (top-%d) x %d MoE layers, %.1f MB per expert (f32); %s; "
           "prompt %ld tokens, %ld decode steps\n\n",
           o.dir, m->cfg.hidden_size, m->cfg.n_routed_experts, m->cfg.num_experts_per_tok,
           m->cfg.num_hidden_layers - m->cfg.first_k_dense_replace,
           3.0 * m->cfg.hidden_size * m->cfg.moe_intermediate_size * 4 / 1e6,
           world > 1 ? "MPI ranks" : "in-process loopback ranks", o.prompt, o.decode);
    printf("| workers | codec | combine | phase | tok/s | disp B/tok | comb B/tok | f32 B/tok | ratio | attention | other | dispatch | expert | combine | wait |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    if (!rc && tok && bench_local(m, &o, tok, csv, &err)) { cli_error("bench", "%s", err.msg); rc = 1; }
    for (int i = 0; i < o.ranks.n && !rc && tok; i++)
        if (bench_workers(m, &o, (int)o.ranks.v[i], tok, csv, &err)) { cli_error("bench", "%s", err.msg); rc = 1; }
    if (csv) fclose(csv);
    free(tok);
    model_free(m);
    return rc;
}
