/* cmd_bench_ep.c - `spex bench ep`: what expert parallelism costs and buys.
 *
 *   mpirun -np 5 spex bench ep --model DIR [--ranks 1,2,3,4] [--prompt N] [--decode N] [--batch B]
 *                              [--overlaps 0,1] [--codecs raw,raw+zstd,...] [--reps 3] [--csv FILE]
 * First a baseline with every expert in the coordinator (workers 0: no codec,
 * no messages, as --no-ep). Then for each number of worker ranks W (experts balanced over ranks 1..W; the
 * job's other ranks idle) it runs, on one random prompt:
 *   - throughput with the exact default (raw, --combine expert): one prefill of
 *     N tokens (tokens/s) and `--decode` single-token steps through the KV cache
 *     (tokens/s), with the coordinator's time split: attention (MLA),
 *     other (dense and shared FFN, routers, head), dispatch, wait (incl. the
 *     expert critical path, shown separately as expert), combine; in process
 *     (workers 0) expert is the routed experts' own compute; and `--batch` B
 *     sequences decoding together (B rows per step, `--decode` steps);
 *     each with micro-batch overlap off and on (`--overlaps 0,1`: 0 off, 1 on), with the share
 *     of the expert round trip that overlap hid (ep_stats.h);
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
    long prompt, decode, reps, batch;
    cli_list_t overlap;        /* 0 off, 1 on: each measured */
    char codec_buf[512];
} bep_opts_t;

typedef struct bep_run {      /* one measured phase */
    int workers;
    const char *codec, *mode, *phase;
    bool overlap;
    long tokens;
    double seconds;
    ep_layer_stats_t d;       /* stats delta over the phase */
    double attention;         /* MLA incl. norms (model_timing_t) */
    double other;             /* dense + shared FFN, routers, head, glue */
    ep_overlap_t ov;          /* overlap delta over the phase */
} bep_run_t;

static const cli_option_t BEP_OPTIONS[] = {
    CLI_OPT_LIST("--ranks", "W,W,...", bep_opts_t, ranks, 1, 4096, "worker counts to measure"),
    CLI_OPT_INT("--prompt", NULL, "N", bep_opts_t, prompt, 1, 1 << 16, "prefill tokens"),
    CLI_OPT_INT("--decode", NULL, "N", bep_opts_t, decode, 0, 1 << 16, "single-token decode steps"),
    CLI_OPT_INT("--batch", NULL, "B", bep_opts_t, batch, 0, 1024, "sequences decoding together (0: no batch phase)"),
    CLI_OPT_LIST("--overlaps", "0,1", bep_opts_t, overlap, 0, 1, "micro-batch overlap settings to measure\n(0 off, 1 on)"),
    CLI_OPT_INT("--reps", NULL, "R", bep_opts_t, reps, 1, 100, "runs per figure (the fastest is kept)"),
    CLI_OPT_STRING("--codecs", "C,C,...", bep_opts_t, codec_list, "codecs to measure"),
    CLI_OPT_STRING("--csv", "FILE", bep_opts_t, csv, "one CSV row per measurement too"),
};

/* -1 to go on, else the exit status. */
static int bep_parse(int argc, char **argv, bep_opts_t *o) {
    *o = (bep_opts_t){.prompt = 64, .decode = 16, .reps = 3, .batch = 8, .ranks = {{1, 2, 3, 4}, 4}, .overlap = {{0, 1}, 2},
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

typedef struct measure {
    ep_stats_t *st;            /* NULL: in-process experts */
    ep_layer_stats_t before;
    ep_overlap_t ov;
    model_timing_t tm;
    double t0;
} measure_t;

static measure_t measure_start(model_t *m) {
    measure_t ms = {.st = ep_backend_stats(m->experts), .tm = m->timing};
    if (ms.st) ms.before = ep_stats_total(ms.st), ms.ov = ms.st->overlap;
    ms.t0 = spex_now();
    return ms;
}

/* Time, stats and overlap deltas since measure_start() for `tokens` tokens. */
static void measure_end(model_t *m, const measure_t *ms, long tokens, bep_run_t *run) {
    run->seconds = spex_now() - ms->t0;
    run->tokens = tokens;
    run->d = ms->st ? ep_layer_stats_delta(ms->before, ep_stats_total(ms->st)) : ms->before;
    run->ov = (ep_overlap_t){0};
    if (ms->st) {
        run->ov.micro_batches = ms->st->overlap.micro_batches;
        run->ov.comm_seconds = ms->st->overlap.comm_seconds - ms->ov.comm_seconds;
        run->ov.hidden_seconds = ms->st->overlap.hidden_seconds - ms->ov.hidden_seconds;
    }
    run->attention = m->timing.attention - ms->tm.attention;
    if (!ms->st) run->d.t_expert = m->timing.routed - ms->tm.routed;   /* in process: the experts themselves */
    run->other = run->seconds - run->attention - run->d.t_dispatch - run->d.t_wait - run->d.t_combine -
                 (ms->st ? 0 : run->d.t_expert);
}

/* `b` sequences, each with a 16-token prompt (not timed), then `steps` decode
 * steps of one row per sequence in one forward each. */
static int batch_phase(model_t *m, const int32_t *tok, int b, int steps, bep_run_t *run, spex_err_t *err) {
    enum { PREFIX = 16 };
    kv_cache_t **kv = calloc((size_t)b, sizeof *kv);
    mla_seq_t *s = calloc((size_t)b, sizeof *s);
    int32_t *t = malloc(sizeof(int32_t) * (size_t)b);
    float *logits = malloc(sizeof(float) * (size_t)b * m->cfg.vocab_size);
    int rc = kv && s && t && logits ? 0 : spex_fail(err, "out of memory");
    for (int i = 0; i < b && !rc; i++) {
        kv[i] = kv_cache_create(model_cache_layers(m), m->cfg.kv_lora_rank, m->cfg.qk_rope_head_dim, PREFIX + steps, err);
        s[i] = (mla_seq_t){kv[i], PREFIX};
        rc = kv[i] ? model_forward(m, tok + i, &s[i], 1, NULL, NULL, NULL, err) : -1;
        s[i].n = 1;
    }
    measure_t ms = measure_start(m);
    for (int j = 0; j < steps && !rc; j++) {
        for (int i = 0; i < b; i++) t[i] = tok[(PREFIX + i + j * b) % (PREFIX + b + steps)];
        rc = model_forward(m, t, s, b, NULL, NULL, logits, err);
    }
    if (!rc) measure_end(m, &ms, (long)b * steps, run);
    for (int i = 0; kv && i < b; i++) kv_cache_free(kv[i]);
    free(kv), free(s), free(t), free(logits);
    return rc;
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
    measure_t ms = measure_start(m);
    for (int i = 0; i < n; i += decode ? 1 : n) {
        mla_seq_t s = {kv, decode ? 1 : n};
        if (model_forward(m, tok + prefix + i, &s, 1, NULL, NULL, logits, err)) goto done;
    }
    measure_end(m, &ms, n, run);
    rc = 0;
done:
    kv_cache_free(kv);
    free(logits);
    return rc;
}

/* The fastest of `reps` runs of phase() (the machine is shared: the minimum
 * is the least disturbed measurement; the first run also pays warm-up). */
static int best_phase(model_t *m, const bep_opts_t *o, const int32_t *tok, bep_run_t *run, spex_err_t *err) {
    bep_run_t best = *run, r = *run;
    for (long i = 0; i < o->reps; i++) {
        int rc = !strcmp(run->phase, "decode") ? phase(m, tok, (int)o->decode, (int)o->prompt, true, &r, err)
               : !strcmp(run->phase, "batch")  ? batch_phase(m, tok, (int)o->batch, (int)o->decode, &r, err)
                                               : phase(m, tok, (int)o->prompt, 0, false, &r, err);
        if (rc) return -1;
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

static double hidden_pct(const bep_run_t *r) {
    return r->ov.comm_seconds > 0 ? 100 * r->ov.hidden_seconds / r->ov.comm_seconds : 0;
}

static void print_run(FILE *f, const bep_run_t *r, bool csv) {
    double wire = per_tok(r->d.dispatch.wire_bytes + r->d.combine.wire_bytes, r->tokens);
    double raw = per_tok(r->d.dispatch.raw_bytes + r->d.combine.raw_bytes, r->tokens);
    const char *ov = r->workers == 0 ? "-" : r->overlap ? "on" : "off";
    if (csv) {
        fprintf(f, "%d,%s,%s,%s,%s,%ld,%.6f,%.2f,%.1f,%.1f,%.1f,%.4f,%.6f,%.6f,%.6f,%.6f,%.6f,%.6f,%lld,%.6f,%.6f\n",
                r->workers, r->codec, r->mode, r->phase, ov, r->tokens, r->seconds, r->tokens / r->seconds,
                per_tok(r->d.dispatch.wire_bytes, r->tokens), per_tok(r->d.combine.wire_bytes, r->tokens), raw,
                wire > 0 ? raw / wire : 0, r->attention, r->other, r->d.t_dispatch, r->d.t_expert, r->d.t_combine, r->d.t_wait,
                (long long)(r->d.dispatch.messages + r->d.combine.messages), r->ov.comm_seconds, r->ov.hidden_seconds);
        return;
    }
    fprintf(f, "| %d | %-9s | %-6s | %-7s | %-3s | %8.1f | %9.0f | %9.0f | %9.0f | %5.2f | %5.0f%% | %5.0f%% | %5.0f%% | %5.0f%% | %5.0f%% | %5.0f%% | %5.0f%% |\n",
            r->workers, r->codec, r->mode, r->phase, ov, r->tokens / r->seconds, per_tok(r->d.dispatch.wire_bytes, r->tokens),
            per_tok(r->d.combine.wire_bytes, r->tokens), raw, wire > 0 ? raw / wire : 0, 100 * r->attention / r->seconds,
            100 * r->other / r->seconds,
            100 * r->d.t_dispatch / r->seconds, 100 * r->d.t_expert / r->seconds, 100 * r->d.t_combine / r->seconds,
            100 * r->d.t_wait / r->seconds, hidden_pct(r));
}

static const char CSV_HEADER[] = "workers,codec,combine,phase,overlap,tokens,seconds,tokens_per_s,dispatch_bytes_per_token,"
                                 "combine_bytes_per_token,raw_bytes_per_token,ratio,attention_s,other_s,dispatch_s,expert_s,"
                                 "combine_s,wait_s,messages,comm_s,hidden_s\n";

/* Every throughput phase asked for (prefill; decode and batch when --decode). */
static int throughput(model_t *m, const bep_opts_t *o, const int32_t *tok, bep_run_t r, FILE *csv, spex_err_t *err) {
    static const char *PHASES[] = {"prefill", "decode", "batch"};
    for (int p = 0; p < 3; p++) {
        if ((p > 0 && o->decode <= 0) || (p == 2 && o->batch <= 0)) continue;
        r.phase = PHASES[p];
        if (best_phase(m, o, tok, &r, err)) return -1;
        print_run(stdout, &r, false);
        if (csv) print_run(csv, &r, true);
    }
    return 0;
}

static int bench_workers(model_t *m, const bep_opts_t *o, int w, const int32_t *tok, FILE *csv, spex_err_t *err) {
    if (with_backend(m, o, w, "raw", 0, err)) return -1;
    for (int i = 0; i < o->overlap.n; i++) {
        m->overlap_min_rows = o->overlap.v[i] != 0 ? 1 : 0;
        bep_run_t r = {.workers = w, .codec = "raw", .mode = "expert", .overlap = o->overlap.v[i] != 0};
        if (throughput(m, o, tok, r, csv, err)) return -1;
    }
    static const char *MODES[] = {"expert", "presum"};
    for (int c = 0; c < o->n_codecs; c++)
        for (int md = 0; md < 2; md++) {
            if (c == 0 && md == 0 && !strcmp(o->codecs[c], "raw")) continue;   /* measured above */
            bep_run_t x = {.workers = w, .codec = o->codecs[c], .mode = MODES[md], .phase = "prefill", .overlap = m->overlap_min_rows > 0};
            if (with_backend(m, o, w, o->codecs[c], md, err) || best_phase(m, o, tok, &x, err))
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
    m->overlap_min_rows = 0;
    bep_run_t r = {.workers = 0, .codec = "-", .mode = "local"};
    int rc = throughput(m, o, tok, r, csv, err);
    model_set_experts(m, NULL);
    return rc;
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
    int total = (int)(o.prompt + o.decode + o.batch + 16);   /* the batch phase's prompts too */
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
           "prompt %ld tokens, %ld decode steps, batch of %ld sequences\n\n",
           o.dir, m->cfg.hidden_size, m->cfg.n_routed_experts, m->cfg.num_experts_per_tok,
           m->cfg.num_hidden_layers - m->cfg.first_k_dense_replace,
           3.0 * m->cfg.hidden_size * m->cfg.moe_intermediate_size * 4 / 1e6,
           world > 1 ? "MPI ranks" : "in-process loopback ranks", o.prompt, o.decode, o.batch);
    printf("| workers | codec | combine | phase | overlap | tok/s | disp B/tok | comb B/tok | f32 B/tok | ratio | attention | other | dispatch | expert | combine | wait | hidden |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    if (!rc && tok && bench_local(m, &o, tok, csv, &err)) { cli_error("bench", "%s", err.msg); rc = 1; }
    for (int i = 0; i < o.ranks.n && !rc && tok; i++)
        if (bench_workers(m, &o, (int)o.ranks.v[i], tok, csv, &err)) { cli_error("bench", "%s", err.msg); rc = 1; }
    if (csv) fclose(csv);
    free(tok);
    model_free(m);
    return rc;
}
