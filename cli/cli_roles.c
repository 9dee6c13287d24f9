/* cli_roles.c - cli_ep_main() (cli_ep.h): who does what in an mpirun job.
 * (Which messages rank 0 and the workers exchange is coordinator/ep_protocol.h's.)
 *
 * Rank 0 runs the subcommand as a single process would (only it reads input
 * and writes stdout); its model load says hello to the workers. When the
 * subcommand returns, rank 0 sends every worker a shutdown and waits (bounded)
 * for the acknowledgements, then MPI_Finalize; a worker that does not answer
 * is named and the job is aborted (MPI_Abort), so nothing hangs.
 * Ranks > 0 read only --model, --rank-timeout and --idle-timeout from the same
 * command line and serve experts until the shutdown (worker/worker.h).
 * Test hooks (environment): SPEX_TEST_STALL=RANK:N makes rank RANK stop
 * answering at its N-th dispatch; SPEX_TEST_EXIT=RANK:N makes it exit(3). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli_ep.h"
#include "coordinator/ep_protocol.h"
#include "core/log.h"
#include "transport/link.h"
#include "transport/mpi_world.h"
#include "worker/worker.h"

/* Value of option `name` anywhere on the command line, or NULL. */
static const char *scan_opt(int argc, char **argv, const char *name) {
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], name)) return argv[i + 1];
    return NULL;
}

static double scan_double(int argc, char **argv, const char *name, double def) {
    const char *v = scan_opt(argc, argv, name);
    char *end;
    double d = v ? strtod(v, &end) : def;
    return v && (end == v || *end || d < 0) ? def : d;
}

/* "RANK:N" from the environment variable for this rank -> N, else 0. */
static int test_hook(const char *var, int rank) {
    const char *v = getenv(var);
    int r, n;
    return v && sscanf(v, "%d:%d", &r, &n) == 2 && r == rank ? n : 0;
}

static int worker_main(int argc, char **argv, int rank) {
    /* A job-wide SIGTERM/SIGINT (Slurm's scancel --signal, --signal=TERM@...) is
     * for rank 0: it finishes or cancels its requests and then sends the shutdown
     * this loop waits for. A worker that died on the signal instead would fail
     * the requests still running (spex serve's grace period, spex batch's last step). */
    signal(SIGTERM, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    spex_err_t err = {{0}};
    const char *dir = scan_opt(argc, argv, "--model");
    worker_t *w = dir ? worker_create(dir, rank, 0, &err) : NULL;
    if (!w) {
        char why[SPEX_ERR_MSG_MAX + 64];
        snprintf(why, sizeof why, "%s", dir ? err.msg : "no --model on the command line");
        if (dir) spex_log("rank %d: %s", rank, err.msg);
        if (!(w = worker_create_refusing(rank, why, &err))) { spex_log("%s", err.msg); return 1; }
    }
    link_t *link = link_mpi_create(&err);
    worker_run_options_t o = {.idle_timeout = scan_double(argc, argv, "--idle-timeout", CLI_EP_DEFAULT_IDLE),
                              .rank_timeout = scan_double(argc, argv, "--rank-timeout", CLI_EP_DEFAULT_TIMEOUT),
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
    if (rank > 0) {
        int rc = worker_main(argc, argv, rank);
        if (rc) mpi_world_abort(rc);
        mpi_world_finalize();
        return rc;
    }
    int rc = run(argc, argv);
    if (size > 1) {
        double t = scan_double(argc, argv, "--rank-timeout", CLI_EP_DEFAULT_TIMEOUT);
        if (ep_protocol_end_job(rc, t, &err)) {
            spex_log("%s; aborting the job", err.msg);
            mpi_world_abort(rc ? rc : 1);
        }
    }
    mpi_world_finalize();
    return rc;
}
