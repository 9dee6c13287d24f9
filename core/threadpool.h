/* threadpool.h - a persistent pool of pthreads for the engine's parallel loops.
 *
 * The pool is created once (at model or worker load) and reused by every
 * matrix product, attention head loop and expert batch, so a decode step
 * costs no thread creation and no allocation. threadpool_run() hands out task
 * indices 0..n_tasks-1 through an atomic counter; the calling thread works
 * too and returns when every task is done. Which thread runs a task never
 * changes what the task computes: callers split work along output elements
 * (rows of W, heads, experts), never inside one sum, so results are the same
 * bits for 1, 2 or N threads.
 *
 * Idle threads spin ~45 us (a decode step issues hundreds of small parallel
 * loops with short serial gaps between them, and a futex wake costs tens of
 * microseconds on a VM) and then sleep on a condition variable, so an idle
 * server or a rank waiting on the network uses no CPU; run() makes the wake-up
 * syscall only when a worker actually sleeps.
 *
 * Each thread owns a scratch arena (threadpool_scratch) for per-task buffers,
 * e.g. a weight block widened to f32; it grows only when a larger size is
 * first asked for, which threadpool_reserve() does at load time. */
#ifndef SPEX_THREADPOOL_H
#define SPEX_THREADPOOL_H

#include <stddef.h>

#include "core/error.h"

typedef struct threadpool threadpool_t;

/* task(ctx, task_index, thread_index); thread_index in [0, threadpool_size). */
typedef void (*pool_task_fn)(void *ctx, int task, int thread);

/* n_threads >= 1 counts the caller: n_threads - 1 threads are started. */
threadpool_t *threadpool_create(int n_threads, spex_err_t *err);
void threadpool_free(threadpool_t *p);

/* Threads including the caller; 1 for a NULL pool. */
int threadpool_size(const threadpool_t *p);

/* Run fn for every task in [0, n_tasks) and wait for all of them. A NULL
 * pool, one thread or one task runs inline on the caller (thread index 0). Not reentrant: a
 * task must not call threadpool_run on the same pool. */
void threadpool_run(threadpool_t *p, pool_task_fn fn, void *ctx, int n_tasks);

/* Thread `thread`'s scratch of at least `floats` floats, 64-byte aligned, or
 * NULL when out of memory. Valid until that thread's next call. */
float *threadpool_scratch(threadpool_t *p, int thread, size_t floats);

/* Grow every thread's arena to `floats` now (load time), so the hot path
 * never allocates. Returns -1 with a message when out of memory. */
int threadpool_reserve(threadpool_t *p, size_t floats, spex_err_t *err);

/* Threads this process may use: CPUs in its affinity mask divided by the
 * ranks sharing this node under mpirun/srun (OMPI_COMM_WORLD_LOCAL_SIZE or
 * SLURM_NTASKS_PER_NODE), at least 1. */
int threadpool_default_threads(void);

#endif
