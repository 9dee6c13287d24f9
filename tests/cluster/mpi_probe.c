/* mpi_probe.c - a self-checking MPI program for the cluster tests: each rank
 * prints where it runs, then every pair of ranks exchanges known patterns
 * (nonblocking sends and receives, uneven sizes) for a number of iterations,
 * so real traffic crosses the links between hosts, and every received element
 * is checked. A peer whose data does not arrive within the deadline is named
 * ("no data from rank R") and the job is aborted, so a dead link ends the run
 * in bounded time with the rank in the message instead of hanging in TCP
 * retransmissions.
 *   mpi_probe [ints_per_peer] [iterations] [seconds_between_iterations] [deadline_seconds]
 * Exit: 0 all data correct, 1 wrong data, 3 a peer missed the deadline or an MPI call failed. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static int rank, size;
static char host[MPI_MAX_PROCESSOR_NAME];

static void fail(const char *what, int rc, int it) {
    char msg[MPI_MAX_ERROR_STRING] = "";
    int len = 0;
    if (rc != MPI_SUCCESS) MPI_Error_string(rc, msg, &len);
    fprintf(stderr, "mpi_probe[rank %d on %s]: %s at iteration %d%s%s; aborting\n", rank, host, what, it,
            len ? ": " : "", msg);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 3);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    int len;
    MPI_Get_processor_name(host, &len);
    long n = argc > 1 ? atol(argv[1]) : 1024;
    int iters = argc > 2 ? atoi(argv[2]) : 1;
    double pause = argc > 3 ? atof(argv[3]) : 0, deadline = argc > 4 ? atof(argv[4]) : 20;
    printf("mpi_probe: rank %d of %d on %s\n", rank, size, host);
    fflush(stdout);

    /* rank r sends n + d ints to rank d, so every receive has its own size */
    long out = 0, in = (n + rank) * size;
    for (int d = 0; d < size; d++) out += n + d;
    int *sbuf = malloc(out * sizeof(int)), *rbuf = malloc(in * sizeof(int));
    MPI_Request *req = malloc(2 * size * sizeof(MPI_Request));
    long bad = 0;
    for (int it = 0; it < iters; it++) {
        long off = 0;
        for (int s = 0; s < size; s++)
            if (MPI_Irecv(rbuf + s * (n + rank), (int)(n + rank), MPI_INT, s, it, MPI_COMM_WORLD, &req[s]))
                fail("MPI_Irecv", 1, it);
        for (int d = 0; d < size; d++) {
            for (long i = 0; i < n + d; i++) sbuf[off + i] = rank * 1000000 + d * 1000 + (int)((i + it) % 1000);
            if (MPI_Isend(sbuf + off, (int)(n + d), MPI_INT, d, it, MPI_COMM_WORLD, &req[size + d]))
                fail("MPI_Isend", 1, it);
            off += n + d;
        }
        double t0 = MPI_Wtime();
        int done = 0;
        while (!done) {
            int rc = MPI_Testall(2 * size, req, &done, MPI_STATUSES_IGNORE);
            if (rc != MPI_SUCCESS) fail("MPI_Testall", rc, it);
            if (done) break;
            if (MPI_Wtime() - t0 > deadline) {
                for (int s = 0; s < size; s++) {
                    int got = 0;
                    MPI_Test(&req[s], &got, MPI_STATUS_IGNORE);
                    if (!got) {
                        char what[96];
                        snprintf(what, sizeof what, "no data from rank %d within %.0f s", s, deadline);
                        fail(what, MPI_SUCCESS, it);
                    }
                }
                fail("sends not completed within the deadline", MPI_SUCCESS, it);
            }
            usleep(200);
        }
        for (int s = 0; s < size; s++)
            for (long i = 0; i < n + rank; i++)
                if (rbuf[s * (n + rank) + i] != s * 1000000 + rank * 1000 + (int)((i + it) % 1000)) bad++;
        if (pause > 0) {
            struct timespec ts = {(time_t)pause, (long)((pause - (long)pause) * 1e9)};
            nanosleep(&ts, NULL);
        }
    }
    long all = 0;
    int rc = MPI_Reduce(&bad, &all, 1, MPI_LONG, MPI_SUM, 0, MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) fail("MPI_Reduce", rc, iters);
    if (rank == 0) printf("mpi_probe: %d ranks, %ld ints/peer, %d iterations, errors=%ld\n", size, n, iters, all);
    free(sbuf); free(rbuf); free(req);
    MPI_Finalize();
    return all ? 1 : 0;
}
