/* cli_ep.h - expert parallelism on the command line: the options every model
 * command shares, loading a model whose routed experts live on worker ranks
 * (or on in-process loopback ranks), and the process roles under mpirun.
 *
 * The options (--placement, --placement-policy, --codec, --dispatch-codec,
 * --combine-codec, --combine, --rank-timeout, --idle-timeout, --ep-stats,
 * --link-delay-ms, --loopback-ranks, --no-ep, --overlap) are one table in cli_ep.c, with their help.
 */
#ifndef SPEX_CLI_EP_H
#define SPEX_CLI_EP_H

#include <stdbool.h>
#include <stdio.h>

#include "cli/cli_opts.h"
#include "coordinator/model/model.h"

typedef struct cli_ep {
    const char *placement, *policy, *codec, *dispatch_codec, *combine_codec, *stats;
    int combine;              /* -1: by the codecs, 0: expert, 1: presum (CLI_EP_COMBINE) */
    int overlap;              /* -1: by the backend (cli_ep_overlap), 0: on, 1: off (CLI_EP_OVERLAP) */
    double rank_timeout, idle_timeout;
    double link_delay_ms;     /* emulated per-message latency on every rank's sends (transport/link_delay.c); 0 off */
    long loopback_ranks;      /* 0: not given (in-process experts unless a wire option asks for the wire) */
    bool no_ep;
    /* compute (cli_compute_group): threads, SIMD path, weight residency */
    long threads;             /* 0: this rank's share of the cores */
    int simd;                 /* CLI_SIMD_CHOICES index */
    int weights;              /* CLI_WEIGHTS_CHOICES index: 0 copy, 1 mmap */
    bool prefault;
    moe_backend_t *backend;   /* set by cli_model_load (owned by the model) */
    /* dynamic routing bias (bias_balance.h): off unless bias_rate > 0 */
    double bias_rate;
    long bias_window;
} cli_ep_t;

#define CLI_EP_DEFAULT_TIMEOUT 20.0
#define CLI_EP_DEFAULT_IDLE 600.0
#define CLI_EP_COMBINE "expert|presum"
#define CLI_EP_OVERLAP "on|off"
#define CLI_SIMD_CHOICES "auto|avx512|avx2|portable"
#define CLI_WEIGHTS_CHOICES "copy|mmap"

void cli_ep_init(cli_ep_t *ep);

/* The options above as a group over `ep` (cli_opts.h), for every model
 * command and for the worker ranks, which read the same table. */
cli_group_t cli_ep_group(cli_ep_t *ep);
/* --threads, --simd, --weights, --prefault over `ep`: how this process computes
 * (every model command, and worker ranks). */
cli_group_t cli_compute_group(cli_ep_t *ep);

/* The model options those set: threads, SIMD path, residency. */
void cli_compute_apply(const cli_ep_t *ep, model_options_t *opt);

/* The mask (cli_group_t.mask) of just --placement and --placement-policy, for `spex placement`. */
#define CLI_EP_PLACEMENT_ONLY 3u

/* model_load() with the routed experts on worker ranks (mpirun), in-process
 * (the default without mpirun: no wire, nothing encoded), or on in-process
 * loopback ranks behind the real wire when --loopback-ranks or any wire
 * option (--codec, --placement, --combine, --ep-stats, ...) asks for it. */
model_t *cli_model_load(const char *dir, model_options_t *opt, cli_ep_t *ep, spex_err_t *err);

/* A new EP backend for the loaded model `m` (from `dir`) with the experts on
 * worker ranks 1..workers (0 = all the job's workers; without mpirun: that
 * many loopback ranks). For benchmarks that compare layouts in one job. */
moe_backend_t *cli_ep_backend(const char *dir, model_t *m, const cli_ep_t *ep, int workers, spex_err_t *err);

/* From how many rows a step overlaps the routed experts' round trip
 * (model.h overlap_min_rows): --overlap on 1, off 0; by default
 * CLI_EP_OVERLAP_MIN_ROWS with MPI worker ranks (measured on a quiet machine,
 * 2026-12-05: a 64-row prefill 2.4-3.4x, a 32-sequence step +6-16%, 8 and 16
 * sequences 3-30% slower on shared memory and fast links, a 1-row decode step
 * slower; docs/expert-parallelism.md)
 * and 0 in one process (in-process experts or loopback ranks run on the
 * caller's thread: nothing to overlap with). */
#define CLI_EP_OVERLAP_MIN_ROWS 32
int cli_ep_overlap(const cli_ep_t *ep, const moe_backend_t *backend);

/* The expert-parallel statistics as JSON text (caller frees), with the
 * workers' counters fetched: for commands that fold them into a stats file of
 * their own. NULL with err empty when the experts are not behind the wire. */
char *cli_ep_stats_json(cli_ep_t *ep, spex_err_t *err);
/* The summary table of the expert-parallel statistics (as --ep-stats prints it), if any. */
void cli_ep_print_stats(const cli_ep_t *ep, FILE *f);
/* After the command's work, before model_free(): --ep-stats. 0 or -1 (printed). */
int cli_ep_finish(const char *cmd, cli_ep_t *ep);

/* The program under a launcher: MPI_Init, rank 0 runs `run` (the subcommand)
 * then shuts the workers down; ranks > 0 serve experts until shutdown. Without
 * a launcher it is just run(argc, argv). */
int cli_ep_main(int argc, char **argv, int (*run)(int argc, char **argv));

#endif
