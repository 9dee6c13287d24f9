/* ep_protocol.h - rank 0's side of every message exchange with the worker
 * ranks (proto/spex.proto), from hello to shutdown; worker/worker.h is the
 * other side.
 *
 * An ep_protocol_t is the coordinator's end of one link (transport/link.h):
 *   hello       every worker gets the model identity, the shape, its expert
 *               ids and the codecs, and must acknowledge (a refusal names it)
 *   dispatch    a call (ep_protocol_call_open) sends one frame to each rank
 *               that has rows, then ep_protocol_await_combine() collects the
 *               combine of every rank sent to (each is handed to the caller).
 *               Up to EP_PROTOCOL_MAX_CALLS calls may be in flight at once
 *               (micro-batches: one call's rows are with the workers while
 *               the coordinator prepares the next); a combine that arrives
 *               for one call while another is awaited is kept until its own
 *               call is awaited (workers answer in the order they were sent to)
 *   stats       every worker's totals (weights, peak RSS, busy/idle time)
 *   bye         end of the session (a worker keeps its weights for the next)
 *   shutdown    every worker acknowledges and stops: the end of the job
 * It keeps the step counter and, per call, which ranks owe an answer until when. Every
 * wait is bounded by the rank timeout (a "loading" message restarts a rank's
 * clock while it reads its experts). A rank that stays silent, answers with an
 * error or out of turn is named in the error, and the protocol is broken from
 * then on: requests fail at once, no bye is sent, only a shutdown still goes
 * out (to end the job quickly). */
#ifndef SPEX_EP_PROTOCOL_H
#define SPEX_EP_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "coordinator/ep/ep_stats.h"
#include "coordinator/ep/placement.h"
#include "transport/link.h"
#include "transport/wire.h"

typedef struct ep_protocol ep_protocol_t;

/* Takes ownership of `link` (also on failure); rank_timeout in seconds. */
ep_protocol_t *ep_protocol_create(link_t *link, double rank_timeout, spex_err_t *err);
/* Says bye first if a session is open and nothing failed; then destroys the link. */
void ep_protocol_free(ep_protocol_t *p);

int ep_protocol_world(const ep_protocol_t *p);
bool ep_protocol_broken(const ep_protocol_t *p);
/* Let frames in flight move while the caller computes (link.h: poll). */
void ep_protocol_poll(ep_protocol_t *p);
/* The workers are in this process (loopback): they run inside the wait. */
bool ep_protocol_in_process(const ep_protocol_t *p);
/* Why the protocol broke: the first failure's message, kept for good (later
 * requests fail with "a worker rank failed earlier: <it>"), or NULL while it
 * works. *rank: the rank at fault (-1: unknown); *cause: "no_answer" (silent
 * past the rank timeout), "bad_answer" (an error reply, a malformed or
 * non-finite answer) or "link" (a send or receive failed). */
const char *ep_protocol_failure(const ep_protocol_t *p, int *rank, const char **cause);

typedef struct ep_hello {
    uint64_t model_id;
    int n_layers, n_routed, hidden;
    const char *dispatch_codec, *combine_codec;   /* codec_name() spellings */
    Spex__CombineMode combine;
    const placement_t *pl;                        /* which experts each rank hosts */
    /* [n_layers * n_routed] content digests (transport/expert_digest.h; 0 in
     * dense layers), each rank gets its pairs'; NULL: contents not checked. */
    const uint64_t *expert_digests;
} ep_hello_t;

/* Open the session: hello to every worker, wait for all acknowledgements.
 * Records each rank's experts_hosted and weight_bytes in `st`. */
int ep_protocol_hello(ep_protocol_t *p, const ep_hello_t *hello, ep_stats_t *st, spex_err_t *err);

/* One rank's share of a layer call, in the wire's shape: rows, and for each
 * row its expert ids and gate weights there (CSR). */
typedef struct ep_rows {
    int layer, rows, pairs;
    uint32_t *counts;    /* [rows] experts per row */
    uint32_t *experts;   /* [pairs] */
    float *weights;      /* [pairs] */
} ep_rows_t;

/* Writes a payload of at most `cap` bytes at dst (*len = bytes written). */
typedef int (*ep_fill_fn)(void *user, uint8_t *dst, size_t cap, size_t *len, spex_err_t *err);

/* Most dispatch calls in flight at once. */
#define EP_PROTOCOL_MAX_CALLS 2

/* Open a dispatch call for `layer`: its id (>= 0), or -1 when the protocol is
 * broken, outside a session or EP_PROTOCOL_MAX_CALLS calls are open. */
int ep_protocol_call_open(ep_protocol_t *p, int layer, spex_err_t *err);

/* Send call `call`'s rows to `rank`, who then owes a combine. The payload (the rows
 * encoded with the session's dispatch codec, at most `cap` bytes) is written
 * by fill(user, ...) straight into the frame after its header: no copy.
 * *frame_len = the bytes sent. */
int ep_protocol_dispatch(ep_protocol_t *p, int call, int rank, const ep_rows_t *rows, size_t cap, ep_fill_fn fill,
                         void *user, size_t *frame_len, spex_err_t *err);

/* One rank's combine, already checked against its dispatch (layer, codec, and
 * c->vectors: one per pair in expert mode, one per row in presum mode);
 * non-zero fails the wait. frame_len = the bytes received. */
typedef int (*ep_combine_fn)(void *user, int rank, const Spex__Combine *c, const uint8_t *payload, size_t plen,
                             size_t frame_len, spex_err_t *err);

/* Wait for the combine of every rank call `call` dispatched to, then close the
 * call (also on failure). *t_wait += seconds spent waiting for frames. */
int ep_protocol_await_combine(ep_protocol_t *p, int call, ep_combine_fn fn, void *user, double *t_wait,
                              spex_err_t *err);

/* Ask every worker for its totals and put them into st->rank[]. On a broken
 * protocol: drop whatever late answers arrived meanwhile, and fail. */
int ep_protocol_fetch_stats(ep_protocol_t *p, ep_stats_t *st, spex_err_t *err);

/* Tell every worker to stop (`code`: the coordinator's exit status) and wait
 * for each acknowledgement for `timeout` seconds; anything else that arrives
 * meanwhile (answers to an aborted request) is dropped. An error names the
 * ranks that did not acknowledge. */
int ep_protocol_shutdown(ep_protocol_t *p, int code, double timeout, spex_err_t *err);

/* The end of an mpirun job on rank 0, after the subcommand returned `code`:
 * ep_protocol_shutdown() over the MPI link, with rank_timeout as the window
 * after a success and at most 3 s after a failure (the job is ending anyway). */
int ep_protocol_end_job(int code, double rank_timeout, spex_err_t *err);

#endif
