/* threadpool.c - see threadpool.h.
 *
 * One job at a time: run() publishes (fn, ctx, n_tasks), sets the task
 * counter to (generation << 32 | 0) and bumps `gen`; workers notice the new
 * generation (spinning first, then on the condition variable) and claim task
 * indices with a compare-and-swap that succeeds only while the counter still
 * carries their generation, so a thread that wakes late can never take a task
 * of the next job with the previous job's size. The caller takes tasks too
 * and spins until `done` reaches n_tasks; only then is the next job published. */
#include "threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

/* ~45 us of pause loops (Zen: ~65 cycles each) before sleeping: long enough to
 * bridge the serial gaps between the parallel loops of a decode step (norms,
 * routing, attention bookkeeping), short enough that an idle server sleeps at
 * once. With a ~1 us spin every loop of a step paid a futex wake, 20% of a
 * 2-thread decode step in the kernel on these VMs; 45 us gave the 16-layer
 * shipped model 1.2-1.45x the K = 0 tokens/s (measured interleaved, quiet). */
enum { SPIN_ROUNDS = 1 << 11 };

typedef struct arena {
    float *p;
    size_t cap;   /* floats */
} arena_t;

struct threadpool {
    int n;                       /* threads including the caller */
    pthread_t *tid;              /* [n - 1] */
    arena_t *arena;              /* [n] */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    _Atomic unsigned gen;        /* job generation */
    _Atomic uint64_t next;       /* gen << 32 | next task index */
    _Atomic int done;            /* finished tasks of the current job */
    _Atomic bool stop;
    _Atomic int sleepers;        /* workers in (or about to enter) pthread_cond_wait */
    pool_task_fn fn;             /* the current job (written before gen is bumped) */
    void *ctx;
    int n_tasks;
};

typedef struct worker_arg {
    threadpool_t *p;
    int index;
} worker_arg_t;

/* Claim and run tasks of generation `gen` until none is left. */
static void work_on(threadpool_t *p, unsigned gen, int thread) {
    pool_task_fn fn = p->fn;
    void *ctx = p->ctx;
    uint64_t n = (uint64_t)p->n_tasks;
    uint64_t v = atomic_load_explicit(&p->next, memory_order_acquire);
    for (;;) {
        if ((unsigned)(v >> 32) != gen || (v & 0xffffffffu) >= n) return;
        if (!atomic_compare_exchange_weak_explicit(&p->next, &v, v + 1, memory_order_acq_rel,
                                                   memory_order_acquire))
            continue;
        fn(ctx, (int)(v & 0xffffffffu), thread);
        atomic_fetch_add_explicit(&p->done, 1, memory_order_release);
        v = atomic_load_explicit(&p->next, memory_order_acquire);
    }
}

/* Wait until gen differs from `seen` (or stop); returns the new generation. */
static unsigned wait_job(threadpool_t *p, unsigned seen) {
    for (int i = 0; i < SPIN_ROUNDS; i++) {
        unsigned g = atomic_load_explicit(&p->gen, memory_order_acquire);
        if (g != seen || atomic_load(&p->stop)) return g;
        cpu_relax();
    }
    /* Dekker with run(): sleepers++ then a gen load here, a gen store then a
     * sleepers load there (all seq_cst), so either run() sees this sleeper and
     * broadcasts under the mutex, or this load sees the new generation. */
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add(&p->sleepers, 1);
    unsigned g;
    while ((g = atomic_load(&p->gen)) == seen && !atomic_load(&p->stop)) pthread_cond_wait(&p->cv, &p->mu);
    atomic_fetch_sub(&p->sleepers, 1);
    pthread_mutex_unlock(&p->mu);
    return g;
}

static void *worker_main(void *arg) {
    worker_arg_t *a = arg;
    threadpool_t *p = a->p;
    int index = a->index;
    free(a);
    unsigned seen = 0;
    for (;;) {
        seen = wait_job(p, seen);
        if (atomic_load(&p->stop)) break;
        work_on(p, seen, index);
    }
    return NULL;
}

threadpool_t *threadpool_create(int n_threads, spex_err_t *err) {
    if (n_threads < 1) n_threads = 1;
    threadpool_t *p = calloc(1, sizeof *p);
    if (!p || !(p->arena = calloc((size_t)n_threads, sizeof *p->arena)) ||
        !(p->tid = calloc((size_t)n_threads, sizeof *p->tid))) {
        if (p) free(p->arena);
        free(p);
        spex_fail(err, "thread pool: out of memory");
        return NULL;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->n = 1;
    for (int i = 1; i < n_threads; i++) {
        worker_arg_t *a = malloc(sizeof *a);
        if (!a) break;
        *a = (worker_arg_t){p, i};
        if (pthread_create(&p->tid[i - 1], NULL, worker_main, a)) {
            free(a);
            break;
        }
        p->n++;
    }
    if (p->n < n_threads) {
        spex_fail(err, "thread pool: could not start thread %d of %d", p->n, n_threads);
        threadpool_free(p);
        return NULL;
    }
    return p;
}

void threadpool_free(threadpool_t *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, true);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n - 1; i++) pthread_join(p->tid[i], NULL);
    for (int i = 0; i < p->n; i++) free(p->arena[i].p);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->arena);
    free(p->tid);
    free(p);
}

int threadpool_size(const threadpool_t *p) { return p ? p->n : 1; }

void threadpool_run(threadpool_t *p, pool_task_fn fn, void *ctx, int n_tasks) {
    if (n_tasks <= 0) return;
    if (!p || p->n == 1 || n_tasks == 1) {
        for (int t = 0; t < n_tasks; t++) fn(ctx, t, 0);
        return;
    }
    unsigned gen = atomic_load_explicit(&p->gen, memory_order_relaxed) + 1;
    p->fn = fn;
    p->ctx = ctx;
    p->n_tasks = n_tasks;
    atomic_store_explicit(&p->done, 0, memory_order_relaxed);
    atomic_store_explicit(&p->next, (uint64_t)gen << 32, memory_order_release);
    atomic_store(&p->gen, gen);
    if (atomic_load(&p->sleepers) > 0) {   /* spinning workers need no syscall (see wait_job) */
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    work_on(p, gen, 0);
    while (atomic_load_explicit(&p->done, memory_order_acquire) < n_tasks) cpu_relax();
}

static float *arena_get(arena_t *a, size_t floats) {
    if (floats <= a->cap && a->p) return a->p;
    size_t bytes = (floats * sizeof(float) + 63) / 64 * 64;
    void *q = NULL;
    if (posix_memalign(&q, 64, bytes ? bytes : 64)) return NULL;
    free(a->p);
    a->p = q;
    a->cap = floats;
    return a->p;
}

float *threadpool_scratch(threadpool_t *p, int thread, size_t floats) {
    if (!p || thread < 0 || thread >= p->n) return NULL;
    return arena_get(&p->arena[thread], floats);
}

int threadpool_reserve(threadpool_t *p, size_t floats, spex_err_t *err) {
    for (int i = 0; p && i < p->n; i++)
        if (!arena_get(&p->arena[i], floats))
            return spex_fail(err, "thread pool: out of memory for %zu MB of scratch", floats * 4 >> 20);
    return 0;
}

static int env_int(const char *name) {
    const char *v = getenv(name);
    if (!v || !*v) return 0;
    char *end;
    long x = strtol(v, &end, 10);
    return *end == '\0' && x > 0 && x < 1 << 20 ? (int)x : 0;
}

int threadpool_default_threads(void) {
    int cpus = 0;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) cpus = CPU_COUNT(&set);
    if (cpus <= 0) cpus = (int)sysconf(_SC_NPROCESSORS_ONLN);
    int local = env_int("OMPI_COMM_WORLD_LOCAL_SIZE");
    if (!local) local = env_int("SLURM_NTASKS_PER_NODE");
    if (!local) local = env_int("MPI_LOCALNRANKS");
    int t = local > 1 ? cpus / local : cpus;
    return t > 0 ? t : 1;
}
