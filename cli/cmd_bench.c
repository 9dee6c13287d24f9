/* cmd_bench.c - `spex bench spec`: what MTP speculation buys, measured in one run.
 *
 *   spex bench spec --model DIR [--max-k 4] [-n 64] [--reps 3] [--prompts FILE] [--temperature T]
 *                   [--draft sampled|argmax] [--csv FILE] [--project DIR2] [expert-parallel options]
 * Under `mpirun -np N` the routed experts run on the N-1 worker ranks (cli_ep.h),
 * so the same table measures speculation with the all-to-all in the loop.
 * For K = 0..max-k it generates n tokens after each prompt and reports decode
 * tokens/s, tokens per verify step, acceptance at each draft position, the
 * speedup over K = 0 from the same run, and the cost model: a step's cost
 * relative to a plain decode step (main forward of K+1 rows + MTP drafting, over
 * a 1-row forward), and the ideal speedup = tokens per step / relative cost.
 * Prompts: one per line from --prompts (text, needs tokenizer.json), else a
 * built-in set of Austen-like openings (or token ids when there is no tokenizer).
 *
 * These machines are shared and their speed drifts by tens of percent within
 * a minute, so the depths are interleaved: each repetition runs every prompt
 * at K = 0..max-k back to back, and drift lands on every K alike. The table
 * sums all repetitions; the speedup range is the lowest and highest of the
 * per-repetition speedups, a direct view of how much the noise moved it.
 *
 * --project DIR2 then projects the speedup onto another checkpoint (e.g. a
 * DeepSeek-V3-proportioned synthetic one): its verify and draft costs, timed
 * after this table, with this run's acceptance (cli/bench_project.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/bench_project.h"
#include "cli/bench_serve.h"
#include "cli/cli_ep.h"
#include "cli/bench_prompts.h"
#include "cli/cli_util.h"
#include "cli/commands.h"
#include "coordinator/decode/generate.h"
#include "coordinator/tokenizer/tokenizer.h"
#include "transport/mpi_world.h"

#define BENCH_MAX_PROMPTS 64

typedef struct bench_opts {
    const char *dir, *prompts_file, *csv, *project;
    long max_k, n, reps;
    cli_sampling_t sampling;   /* --temperature, --draft */
    cli_ep_t ep;
    seq_params_t sp;           /* from sampling */
} bench_opts_t;

typedef struct bench_row {
    int k;
    long tokens;
    double decode_s;
    spec_stats_t st;
    double speedup_min, speedup_max;   /* over repetitions */
} bench_row_t;

static const cli_option_t BENCH_OPTIONS[] = {
    CLI_OPT_INT("--max-k", NULL, "K", bench_opts_t, max_k, 0, SPEX_MAX_SPEC_K, "measure K = 0..K drafts per step"),
    CLI_OPT_INT("-n", NULL, "N", bench_opts_t, n, 1, 1 << 20, "tokens generated per prompt"),
    CLI_OPT_INT("--reps", NULL, "R", bench_opts_t, reps, 1, 1000,
                "repetitions; each runs every prompt at every K,\ninterleaved"),
    CLI_OPT_STRING("--prompts", "FILE", bench_opts_t, prompts_file,
                   "one prompt per line (default: built-in Austen-like\nopenings)"),
    CLI_OPT_STRING("--csv", "FILE", bench_opts_t, csv,
                   "the table as CSV too (and --project's table in\nFILE.project.csv: a .csv suffix is replaced)"),
    CLI_OPT_STRING("--project", "DIR", bench_opts_t, project,
                   "then project the speedup onto checkpoint DIR (with an\nMTP module, e.g. `spex synth --preset "
                   "bench-medium\n--mtp 1`): its verify and draft step costs, timed\nin process, with the "
                   "acceptance measured here"),
};

/* -1 to go on, else the exit status. */
static int bench_parse(int argc, char **argv, bench_opts_t *o) {
    o->max_k = 4;
    o->n = 64;
    o->reps = 3;
    o->sampling = cli_sampling_defaults();
    cli_ep_init(&o->ep);
    cli_group_t groups[] = {cli_model_group(&o->dir), CLI_GROUP(NULL, BENCH_OPTIONS, o),
                            cli_sampling_group(&o->sampling, CLI_S_TEMPERATURE | CLI_S_DRAFT | CLI_S_DRAFT_MIN_P), cli_ep_group(&o->ep), cli_compute_group(&o->ep)};
    cli_spec_t spec = CLI_SPEC("bench spec", "bench spec --model DIR [options]   (under mpirun -np N too)",
                               "MTP speculation at K = 0..max-k, interleaved: tokens/s, tokens per step, acceptance.\n"
                               "--project DIR then times DIR's verify (K+1 rows) and draft forwards and prints the\n"
                               "speedup this run's acceptance would give there (README, \"What it buys\").",
                               groups);
    int rc = cli_run_parse(&spec, argc, argv, 2);
    if (rc >= 0) return rc;
    o->sp = cli_sampling_seq(&o->sampling);
    return -1;
}

/* Tokenized prompts: from the file, the built-in texts, or synthetic ids. */
static int bench_prompts(const bench_opts_t *o, const model_t *m, int32_t **ids, int *lens, spex_err_t *err) {
    char path[4096], line[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", o->dir);
    tokenizer_t *tok = access(path, R_OK) == 0 ? tokenizer_load(o->dir, err) : NULL;
    if (!tok && (o->prompts_file || access(path, R_OK) == 0)) return -1;
    int n = 0;
    FILE *f = o->prompts_file ? fopen(o->prompts_file, "r") : NULL;
    if (o->prompts_file && !f) { tokenizer_free(tok); return spex_fail(err, "cannot open '%s'", o->prompts_file); }
    for (int i = 0; n < BENCH_MAX_PROMPTS; i++) {
        const char *text = NULL;
        if (f) { if (!fgets(line, sizeof line, f)) break; line[strcspn(line, "\n")] = 0; text = line; }
        else if (i < BENCH_N_DEFAULT_PROMPTS) text = BENCH_DEFAULT_PROMPTS[i];
        else break;
        if (!*text) continue;
        size_t cnt = 0;
        if (tok) {
            if (tokenizer_encode(tok, text, strlen(text), tokenizer_bos_id(tok) >= 0, &ids[n], &cnt, err)) break;
        } else {                         /* no tokenizer: ids derived from the text, inside the vocabulary */
            cnt = strlen(text);
            ids[n] = malloc(sizeof(int32_t) * cnt);
            for (size_t j = 0; j < cnt; j++) ids[n][j] = (int32_t)((unsigned char)text[j] % m->cfg.vocab_size);
        }
        lens[n++] = (int)cnt;
    }
    if (f) fclose(f);
    tokenizer_free(tok);
    return err->msg[0] ? -1 : n;
}

/* One generation of `ids` at depth k, added to each row in `acc` (n_acc of them). */
static int bench_one(model_t *m, const bench_opts_t *o, int k, const int32_t *ids, int len, uint64_t seed,
                     bench_row_t **acc, int n_acc, spex_err_t *err) {
    seq_params_t p = o->sp;
    p.spec_k = k;
    p.max_new_tokens = (int)o->n;
    p.sampling.seed = seed;
    int32_t *gen;
    int n_gen;
    gen_stats_t st;
    if (generate(m, ids, len, &p, NULL, NULL, &gen, &n_gen, &st, err)) return -1;
    free(gen);
    for (int a = 0; a < n_acc; a++) {
        acc[a]->tokens += st.spec.emitted;      /* tokens produced by decode steps */
        acc[a]->decode_s += st.decode_seconds;
        spec_stats_add(&acc[a]->st, &st.spec);
    }
    return 0;
}

static double row_tps(const bench_row_t *r) { return r->decode_s > 0 ? r->tokens / r->decode_s : 0; }

/* rows[0..max_k]: every repetition, every prompt at every K in turn (see the top comment). */
static int bench_all(model_t *m, const bench_opts_t *o, int32_t **ids, const int *lens, int n, bench_row_t *rows,
                     spex_err_t *err) {
    int nk = (int)o->max_k + 1;
    for (int k = 0; k < nk; k++) rows[k] = (bench_row_t){.k = k, .speedup_min = 1e300};
    if (bench_one(m, o, 0, ids[0], lens[0], 0, NULL, 0, err)) return -1;   /* warm-up: page in the weights */
    for (long rep = 0; rep < o->reps; rep++) {
        bench_row_t this_rep[SPEX_MAX_SPEC_K + 1] = {0};
        for (int i = 0; i < n; i++)
            for (int k = 0; k < nk; k++) {
                bench_row_t *acc[2] = {&rows[k], &this_rep[k]};
                if (bench_one(m, o, k, ids[i], lens[i], (uint64_t)i, acc, 2, err)) return -1;
            }
        for (int k = 0; k < nk; k++) {
            double sp = row_tps(&this_rep[0]) > 0 ? row_tps(&this_rep[k]) / row_tps(&this_rep[0]) : 0;
            if (sp < rows[k].speedup_min) rows[k].speedup_min = sp;
            if (sp > rows[k].speedup_max) rows[k].speedup_max = sp;
        }
        fprintf(stderr, "spex bench spec: repetition %ld of %ld done\n", rep + 1, o->reps);
    }
    return 0;
}

static void bench_print(FILE *f, const bench_row_t *rows, int nk, bool csv) {
    const bench_row_t *b = &rows[0];
    double base_tps = row_tps(b);
    double base_step = b->st.steps ? b->st.verify_seconds / b->st.steps : 0;
    if (csv)
        fprintf(f, "k,tokens,steps,tokens_per_s,tokens_per_step,speedup,speedup_min,speedup_max,rel_step_cost,"
                   "rel_verify_cost,rel_draft_cost,ideal_speedup,acceptance\n");
    else
        fprintf(f, "%3s %8s %7s %10s %10s %8s %13s %10s %15s %8s  %s\n", "K", "tokens", "steps", "tok/s", "tok/step",
                "speedup", "(range)", "step cost", "= verify+draft", "ideal", "acceptance by draft position");
    for (int i = 0; i < nk; i++) {
        const bench_row_t *r = &rows[i];
        double tps = row_tps(r);
        double tpstep = r->st.steps ? (double)r->st.emitted / r->st.steps : 0;
        double per = r->st.steps && base_step > 0 ? 1.0 / r->st.steps / base_step : 0;
        double verify = r->st.verify_seconds * per, draft = r->st.draft_seconds * per, cost = verify + draft;
        double ideal = cost > 0 ? tpstep / cost : 0;
        fprintf(f, csv ? "%d,%ld,%ld,%.3f,%.4f,%.4f,%.4f,%.4f,%.4f,%.4f,%.4f,%.4f,"
                       : "%3d %8ld %7ld %10.2f %10.3f %7.2fx  (%.2f-%.2fx) %10.3f %7.2f+%-7.2f %7.2fx  ",
                r->k, r->tokens, r->st.steps, tps, tpstep, base_tps > 0 ? tps / base_tps : 0, r->speedup_min,
                r->speedup_max, cost, verify, draft, ideal);
        for (int j = 0; j < r->k; j++)
            fprintf(f, csv ? (j ? ";%.4f" : "%.4f") : "%5.1f%% ",
                    (r->st.drafted_at[j] ? (double)r->st.accepted_at[j] / r->st.drafted_at[j] : 0) * (csv ? 1 : 100));
        fputc('\n', f);
    }
}

/* --project: the main run's statistics, projected onto o->project. */
static int bench_projection(const bench_opts_t *o, const bench_row_t *rows, spex_err_t *err) {
    spec_stats_t st[SPEX_MAX_SPEC_K + 1];
    int nk = (int)o->max_k + 1;
    for (int k = 0; k < nk; k++) st[k] = rows[k].st;
    bench_project_t p = {.dir = o->project, .csv = o->csv, .reps = o->reps, .ep = &o->ep,
                         .main_on_ranks = mpi_world_size() > 1 || o->ep.backend};
    return bench_project_run(&p, st, nk, err);
}

static int bench_spec(int argc, char **argv) {
    bench_opts_t o = {0};
    int pr = bench_parse(argc, argv, &o);
    if (pr >= 0) return pr;
    spex_err_t err = {0};
    model_options_t mo = {.load_mtp = true, .local_experts = true, .progress = cli_progress, .progress_user = "loading model"};
    model_t *m = NULL;
    int32_t *ids[BENCH_MAX_PROMPTS] = {0};
    int lens[BENCH_MAX_PROMPTS], n = -1, rc = 1;
    bench_row_t rows[SPEX_MAX_SPEC_K + 1];
    if (o.project && bench_project_check(o.project, &err)) goto fail;   /* before the long part */
    m = cli_model_load(o.dir, &mo, &o.ep, &err);
    if (!m || (n = bench_prompts(&o, m, ids, lens, &err)) < 0) goto fail;
    if (m->n_mtp == 0 && o.max_k > 0) { spex_fail(&err, "the model has no MTP module"); goto fail; }
    if (bench_all(m, &o, ids, lens, n, rows, &err)) goto fail;
    int world = mpi_world_size();
    printf("spec bench: %s, %ld x %d prompts x %ld tokens, temperature %.2f%s; routed experts %s",
           o.dir, o.reps, n, o.n, (double)o.sp.sampling.temperature,
           o.sp.sampling.temperature > 0 ? (o.sp.sampled_drafts ? ", sampled drafts" : ", argmax drafts") : "",
           world > 1 ? "on" : (o.ep.backend ? "on loopback ranks" : "in process"));
    if (world > 1) printf(" %d worker ranks, codec %s", world - 1, o.ep.codec ? o.ep.codec : "raw");
    printf("\n");
    bench_print(stdout, rows, (int)o.max_k + 1, false);
    if (cli_ep_finish("bench", &o.ep)) goto fail_quiet;
    printf("speedup: tok/s over K = 0's, all repetitions (range: lowest-highest single repetition); step cost =\n"
           "(main forward of K+1 rows + MTP drafting) / plain 1-row decode step; ideal = tok/step / step cost\n");
    if (o.csv) {
        FILE *f = fopen(o.csv, "w");
        if (!f) { spex_fail(&err, "cannot write '%s'", o.csv); goto fail; }
        bench_print(f, rows, (int)o.max_k + 1, true);
        fclose(f);
    }
    if (o.project && bench_projection(&o, rows, &err)) goto fail;
    rc = 0;
    goto done;
fail:
    cli_error("bench", "%s", err.msg);
fail_quiet:
done:
    for (int i = 0; i < n; i++) free(ids[i]);
    model_free(m);
    return rc;
}

int cmd_bench(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "spec")) return bench_spec(argc, argv);
    if (argc >= 2 && !strcmp(argv[1], "ep")) return cmd_bench_ep(argc, argv);
    if (argc >= 2 && !strcmp(argv[1], "serve")) return bench_serve(argc, argv);
    if (argc >= 2 && !strcmp(argv[1], "scale")) return cmd_bench_scale(argc, argv);
    fprintf(argc >= 2 && !strcmp(argv[1], "--help") ? stdout : stderr,
            "usage: [mpirun -np N] spex bench spec|ep|scale|serve [options]   (spex bench NAME --help for the options)\n"
            "  spec   MTP speculation: K = 0..max-k interleaved, tokens/s, acceptance, speedup\n"
            "  ep     expert parallelism: tokens/s, wire bytes per token per codec, time split\n"
            "  scale  one scaling-study point: B sequences x K drafts, tokens/s, time split, bytes (launch/scaling-study)\n"
            "  serve  load generator for a running `spex serve`: req/s, tokens/s, TTFT, ITL\n");
    return argc >= 2 && !strcmp(argv[1], "--help") ? 0 : 2;
}
