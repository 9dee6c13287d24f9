/* cli_ep.h - expert parallelism on the command line: the options every model
 * command shares, loading a model whose routed experts live on worker ranks
 * (or on in-process loopback ranks), and the process roles under mpirun.
 *
 *   --placement FILE          expert -> rank table (JSON, coordinator/placement.h)
 *   --placement-policy P      contiguous (default) | round-robin
 *   --codec SPEC              payload codec both ways (raw, bf16, fp8, +zstd[:level])
 *   --dispatch-codec SPEC / --combine-codec SPEC
 *   --combine expert|presum   default: expert when both codecs are lossless, else presum
 *   --rank-timeout SEC        how long the coordinator waits for a worker (default 20)
 *   --idle-timeout SEC        how long a worker waits for the coordinator (default 600; 0 = forever)
 *   --ep-stats FILE           statistics as JSON (+ a summary table on stderr)
 *   --loopback-ranks N        world size 1: emulate N worker ranks in this process (default 1)
 *   --no-ep                   world size 1: the plain in-process experts (no codec, no wire)
 */
#ifndef SPEX_CLI_EP_H
#define SPEX_CLI_EP_H

#include <stdbool.h>
#include <stdio.h>

#include "coordinator/model.h"

typedef struct cli_ep {
    const char *placement, *policy, *codec, *dispatch_codec, *combine_codec, *combine, *stats;
    double rank_timeout;
    long loopback_ranks;
    bool no_ep;
    moe_backend_t *backend;   /* set by cli_model_load (owned by the model) */
} cli_ep_t;

#define CLI_EP_DEFAULT_TIMEOUT 20.0
#define CLI_EP_DEFAULT_IDLE 600.0

void cli_ep_init(cli_ep_t *ep);

/* If argv[*i] is an EP option, consume it (and its value): 1; bad value: -1; else 0. */
int cli_ep_opt(int argc, char **argv, int *i, cli_ep_t *ep);

/* The option lines above, for a command's usage text. */
void cli_ep_usage(FILE *f);

/* model_load() with the routed experts on worker ranks (mpirun), loopback
 * ranks, or in-process (--no-ep). The coordinator loads no routed expert
 * weights unless --no-ep. */
model_t *cli_model_load(const char *dir, model_options_t *opt, cli_ep_t *ep, spex_err_t *err);

/* A new EP backend for the loaded model `m` (from `dir`) with the experts on
 * worker ranks 1..workers (0 = all the job's workers; without mpirun: that
 * many loopback ranks). For benchmarks that compare layouts in one job. */
moe_backend_t *cli_ep_backend(const char *dir, model_t *m, const cli_ep_t *ep, int workers, spex_err_t *err);

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
