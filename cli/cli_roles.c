/* cli_roles.c - cli_ep_main() (cli_ep.h): who does what in an mpirun job.
 * (Which messages rank 0 and the workers exchange is coordinator/ep/ep_protocol.h's.)
 *
 * Rank 0 runs the subcommand as a single process would (only it reads input
 * and writes stdout); its model load says hello to the workers. When the
 * subcommand returns, rank 0 sends every worker a shutdown and waits (bounded)
 * for the acknowledgements, then MPI_Finalize; a worker that does not answer
 * is named and the job is aborted (MPI_Abort), so nothing hangs.
 * Every rank reads the job's options once, from the same command line and
 * with the same tables as the subcommand (--model and cli_ep.h's group; the
 * rest is skipped): rank 0 takes --rank-timeout for the shutdown, ranks > 0
 * also --model and --idle-timeout, and serve experts until the shutdown
 * (worker/worker.h). A worker whose options are bad refuses the hello with
 * the reason; rank 0's subcommand rejects the same options (exit 2).
 * Test hooks (environment): SPEX_TEST_STALL=RANK:N makes rank RANK stop
 * answering at its N-th dispatch; SPEX_TEST_EXIT=RANK:N makes it exit(3). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli_ep.h"
#include "coordinator/ep/ep_protocol.h"
#include "core/log.h"
#include "transport/link.h"
#include "transport/mpi_world.h"
#include "worker/worker.h"

/* What the ranks read from the command line. */
typedef struct job_opts {
    const char *model;
    cli_ep_t ep;
    char bad[256];   /* empty, or why the options were refused (then the rest holds the defaults) */
} job_opts_t;

static void job_options(int argc, char **argv, job_opts_t *o) {
    o->model = NULL;
    o->bad[0] = '\0';
    cli_ep_init(&o->ep);
    cli_group_t groups[] = {cli_model_group(&o->model), cli_ep_group(&o->ep), cli_compute_group(&o->ep)};
    cli_spec_t spec = {"worker", "<command> --model DIR [options]", NULL, groups, 3};
    if (cli_parse_known(&spec, argc, argv, 1, o->bad, sizeof o->bad) == CLI_OK) o->bad[0] = '\0';
}

/* "RANK:N" from the environment variable for this rank -> N, else 0. */
static int test_hook(const char *var, int rank) {
    const char *v = getenv(var);
    int r, n;
    return v && sscanf(v, "%d:%d", &r, &n) == 2 && r == rank ? n : 0;
}

/* A worker that only refuses the hello, saying why (a bad model, bad options). */
static worker_t *refusing(int rank, const char *why) {
    spex_err_t err = {{0}};
    worker_t *w = worker_create_refusing(rank, why, &err);
    if (!w) spex_log("%s", err.msg);
    return w;
}

static int worker_main(const job_opts_t *jo, int rank) {
    /* A job-wide SIGTERM/SIGINT (Slurm's scancel --signal, --signal=TERM@...) is
     * for rank 0: it finishes or cancels its requests and then sends the shutdown
     * this loop waits for. A worker that died on the signal instead would fail
     * the requests still running (spex serve's grace period, spex batch's last step). */
    signal(SIGTERM, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    spex_err_t err = {{0}};
    worker_t *w = NULL;
    if (jo->bad[0]) w = refusing(rank, jo->bad);
    else if (!jo->model) w = refusing(rank, "no --model on the command line");
    else if (!(w = worker_create(jo->model, rank, (int)jo->ep.threads, &err))) {
        spex_log("rank %d: %s", rank, err.msg);
        w = refusing(rank, err.msg);
    }
    if (!w) return 1;
    link_t *link = link_delay_wrap(link_mpi_create(&err), jo->ep.link_delay_ms / 1e3, &err);   /* 0: no delay */
    worker_run_options_t o = {.idle_timeout = jo->ep.idle_timeout,
                              .rank_timeout = jo->ep.rank_timeout,
                              .stall_at = test_hook("SPEX_TEST_STALL", rank),
                              .exit_at = test_hook("SPEX_TEST_EXIT", rank)};
    int rc = link ? worker_run(w, link, &o, &err) : -1;
    if (rc == WORKER_TEST_EXIT) {
        spex_log("test hook: exiting at dispatch %d", o.exit_at);
        _exit(WORKER_TEST_EXIT);
    }
    if (rc) spex_log("%s", err.msg);
    if (link) link->destroy(link);
    worker_free(w);
    return rc ? 1 : 0;
}

int cli_ep_main(int argc, char **argv, int (*run)(int argc, char **argv)) {
    if (!mpi_world_launched()) return run(argc, argv);
    int rank = 0, size = 1;
    spex_err_t err = {{0}};
    if (mpi_world_init(&argc, &argv, &rank, &size, &err)) {
        fprintf(stderr, "spex: %s\n", err.msg);
        return 1;
    }
    job_opts_t jo;
    job_options(argc, argv, &jo);
    if (rank > 0) {
        int rc = worker_main(&jo, rank);
        if (rc) mpi_world_abort(rc);
        mpi_world_finalize();
        return rc;
    }
    int rc = run(argc, argv);
    if (size > 1) {
        double t = jo.ep.rank_timeout;
        if (ep_protocol_end_job(rc, t, &err)) {
            spex_log("%s; aborting the job", err.msg);
            mpi_world_abort(rc ? rc : 1);
        }
    }
    mpi_world_finalize();
    return rc;
}
