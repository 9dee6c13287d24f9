/* worker.h - an expert shard: the routed experts one rank hosts, and its
 * answers to the coordinator's messages (proto/spex.proto).
 *
 * worker_handle() is the whole protocol on the worker side, one frame in and
 * at most one frame out; worker_run() (worker_loop.c) is the rank's loop
 * around it over an MPI link, and the in-process loopback calls it directly,
 * so both compute with the same code:
 *   hello     -> check model identity and shape, load the listed experts of
 *                every MoE layer (only their tensors are read), hello-ack
 *   dispatch  -> decode rows, run each hosted expert over its rows (row-
 *                independent GEMM), combine (per (row, expert) or pre-summed)
 *   stats-request -> stats;  bye -> end of session;  shutdown -> ack, stop
 * A request the worker cannot serve (malformed, wrong version, an expert it
 * does not host, another checkpoint) is answered with an error message that
 * names the rank; the worker keeps running. */
#ifndef SPEX_WORKER_H
#define SPEX_WORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "transport/link.h"

typedef struct worker worker_t;

/* Open the checkpoint in `dir` (config.json + safetensors headers; no weights
 * yet). threads: for the experts (0 = this rank's share of the node's cores). */
worker_t *worker_create(const char *dir, int rank, int threads, spex_err_t *err);

/* A worker without a model that refuses every hello with `reason` (a rank
 * whose --model is missing or unreadable still takes part in the shutdown). */
worker_t *worker_create_refusing(int rank, const char *reason, spex_err_t *err);
void worker_free(worker_t *w);

/* Called every few experts while a hello loads weights (done of total). */
void worker_set_progress(worker_t *w, void (*fn)(void *user, int done, int total), void *user);

/* Handle one frame from the coordinator. *reply = malloc'ed frame or NULL;
 * *shutdown set when the coordinator said shutdown. Returns -1 only when the
 * worker cannot go on (out of memory); protocol errors become error replies. */
int worker_handle(worker_t *w, const uint8_t *msg, size_t len, uint8_t **reply, size_t *reply_len, bool *shutdown,
                  spex_err_t *err);

/* Account `seconds` spent waiting for the coordinator (reported in stats). */
void worker_note_idle(worker_t *w, double seconds);

/* The checkpoint identity the worker computed (core/model_id.h). */
uint64_t worker_model_id(const worker_t *w);

typedef struct worker_run_options {
    double idle_timeout;   /* s without any message from rank 0 before giving up; 0 = wait forever */
    double rank_timeout;   /* s for rank 0 to take a reply */
    int stall_at;          /* test hook: stop answering at this dispatch (1-based); 0 = never */
    int exit_at;           /* test hook: return WORKER_TEST_EXIT at this dispatch; 0 = never */
} worker_run_options_t;

#define WORKER_TEST_EXIT 3

/* The rank's loop: receive from rank 0, handle, reply, until shutdown (0).
 * Errors (coordinator silent past idle_timeout, a reply not taken) name rank 0. */
int worker_run(worker_t *w, link_t *link, const worker_run_options_t *o, spex_err_t *err);

#endif
