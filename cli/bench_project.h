/* bench_project.h - `spex bench spec --project DIR`: the speedup MTP speculation
 * would give a model of other proportions (e.g. a DeepSeek-V3-proportioned,
 * memory-bound synthetic checkpoint with an MTP module, `spex synth --preset
 * bench-medium --mtp 1`), from the step costs measured on DIR and the
 * acceptance measured on the benchmarked model in the same run.
 *
 * On DIR (routed experts always in process), after a 64-token prefill of the
 * main model and its MTP module, each measured forward is rolled back so the
 * context stays the same; interleaved, `reps` x BENCH_PROJECT_ROUNDS times:
 *   tv(n)  an n-row main forward (n = 1..max_k+1; consecutive positions of one
 *          sequence, logits for every row: a verify step); t1 = tv(1), the
 *          plain 1-row decode step;
 *   td(n)  an n-row forward of MTP module 0 with the last row's logits (n = 1:
 *          one chained draft; n = a+1: the catch-up after a accepted drafts).
 * Medians. For each K, from what the main run measured at that K, per step:
 * drafts D, catch-ups C (the steps that draft), accepted drafts per catch-up
 * A, and tokens E (the table's tok/step, = 1 + a1 + a1 a2 + ... as measured):
 *   step cost = [tv(1+D) + C td(1+A) + (D-C) td(1)] / t1   (tv, td interpolated
 *               between whole rows), projected speedup = E / step cost,
 * the engine's own step (coordinator/decode/engine.c): one verify forward of
 * [last, d1..dD], one MTP catch-up over the accepted rows that drafts d1, and
 * D-1 chained one-row drafts. Only MTP module 0 is timed (DeepSeek-V3 has one). */
#ifndef SPEX_BENCH_PROJECT_H
#define SPEX_BENCH_PROJECT_H

#include <stdbool.h>

#include "cli/cli_ep.h"
#include "coordinator/decode/engine.h"

#define BENCH_PROJECT_CONTEXT 64
#define BENCH_PROJECT_ROUNDS 5

typedef struct bench_project {
    const char *dir;          /* the checkpoint to project onto */
    const char *csv;          /* the main table's CSV file, or NULL (see bench_project_csv_path) */
    long reps;
    const cli_ep_t *ep;       /* compute options (threads, SIMD, weights) shared with the main model */
    bool main_on_ranks;       /* the main model's experts run on expert ranks (the projection's do not) */
} bench_project_t;

/* Before the main benchmark runs: DIR's config.json is readable and declares an MTP module. */
int bench_project_check(const char *dir, spex_err_t *err);

/* Load p->dir, time its steps, print the projection of K = 0..nk-1 from the
 * main run's statistics st[K] to stdout (and to the CSV file, if any), free it. */
int bench_project_run(const bench_project_t *p, const spec_stats_t *st, int nk, spex_err_t *err);

/* Where the projection's CSV goes for the main table's `csv`: FILE.csv -> FILE.project.csv,
 * any other name gets ".project.csv" appended. */
void bench_project_csv_path(const char *csv, char *out, size_t size);

#endif
