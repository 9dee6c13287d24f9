/* test_alloc_fail.c - fault injection: every allocation of loading a model
 * and running it can fail, and each failure is a clean error.
 *
 * The test executable is linked with -Wl,--wrap for malloc, calloc, realloc,
 * strdup, strndup, posix_memalign and aligned_alloc (tests/CMakeLists.txt), so
 * every call from Spex's own code (the static libraries linked in) goes
 * through the counters below; the library keeps no hook or global state for
 * it. A dry run counts the N allocations of the scenario (load the golden
 * tiny model with its MTP layer and in-process experts, create a sequence,
 * run two engine steps: prefill with speculation, then a decode step; and
 * the shipped model's tokenizer: load, encode, decode); then
 * for every k in 1..N the k-th allocation fails: the scenario must return an
 * error with a message (or succeed, when the allocation was optional), never
 * crash, and free everything (the ASan tree's LeakSanitizer checks the
 * process at exit). Threads count too: the counters are atomic. */
#include <criterion/criterion.h>
#include <execinfo.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/decode/engine.h"
#include "coordinator/model/model.h"
#include "coordinator/tokenizer/tokenizer.h"
#include "testutil.h"

static atomic_long n_allocs, fail_at, n_failed;
static atomic_bool trace;

static bool inject(void) {
    long k = atomic_fetch_add(&n_allocs, 1) + 1;
    if (k != atomic_load(&fail_at)) return false;
    atomic_fetch_add(&n_failed, 1);
    if (atomic_load(&trace)) {   /* where the failed allocation was asked for */
        void *pc[16];
        backtrace_symbols_fd(pc, backtrace(pc, 16), 2);
    }
    return true;
}

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t m);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);
int __real_posix_memalign(void **p, size_t a, size_t n);
void *__real_aligned_alloc(size_t a, size_t n);
void *__wrap_malloc(size_t n) { return inject() ? NULL : __real_malloc(n); }
void *__wrap_calloc(size_t n, size_t m) { return inject() ? NULL : __real_calloc(n, m); }
void *__wrap_realloc(void *p, size_t n) { return inject() ? NULL : __real_realloc(p, n); }
char *__wrap_strdup(const char *s) { return inject() ? NULL : __real_strdup(s); }
char *__wrap_strndup(const char *s, size_t n) { return inject() ? NULL : __real_strndup(s, n); }
int __wrap_posix_memalign(void **p, size_t a, size_t n) { return inject() ? 12 /* ENOMEM */ : __real_posix_memalign(p, a, n); }
void *__wrap_aligned_alloc(size_t a, size_t n) { return inject() ? NULL : __real_aligned_alloc(a, n); }

/* The scenario; 0 when it ran to the end, -1 with err set when a step failed. */
static int scenario(const char *dir, spex_err_t *err) {
    model_options_t o = {.load_mtp = true, .local_experts = true, .threads = 2};
    model_t *m = model_load(dir, &o, err);
    if (!m) return -1;
    int32_t prompt[] = {5, 17, 42, 7};
    seq_params_t p = {.max_new_tokens = 4, .spec_k = 1, .sampling = {.top_p = 1.0f}};
    sequence_t *s = sequence_create(m, prompt, 4, &p, err);
    int rc = s ? 0 : -1;
    for (int step = 0; step < 2 && !rc; step++) rc = engine_step(m, &s, 1, NULL, NULL, err);
    sequence_free(s);
    model_free(m);
    return rc;
}

/* Run fn once to count its allocations, then once per k failing the k-th: each run must end in a
 * clean error (or succeed when the allocation was optional). Returns the count. */
static long fail_each(const char *what, int (*fn)(const char *, spex_err_t *), const char *arg) {
    spex_err_t err = {{0}};
    atomic_store(&fail_at, 0);
    atomic_store(&n_allocs, 0);
    cr_assert_eq(fn(arg, &err), 0, "%s, dry run: %s", what, err.msg);
    long total = atomic_load(&n_allocs);
    cr_assert_gt(total, 10);
    long errors = 0, ok = 0;
    /* SPEX_ALLOC_FAIL_FROM=K starts at K, SPEX_ALLOC_FAIL_TRACE=1 prints each k and the failed
     * allocation's stack (to find a crash) */
    const char *from = getenv("SPEX_ALLOC_FAIL_FROM");
    atomic_store(&trace, getenv("SPEX_ALLOC_FAIL_TRACE") != NULL);
    for (long k = from ? atol(from) : 1; k <= total; k++) {
        if (atomic_load(&trace)) fprintf(stderr, "alloc_fail: k = %ld of %ld\n", k, total);
        atomic_store(&n_allocs, 0);
        atomic_store(&n_failed, 0);
        atomic_store(&fail_at, k);
        spex_err_clear(&err);
        int rc = fn(arg, &err);
        atomic_store(&fail_at, 0);
        if (rc) {
            cr_assert(err.msg[0], "%s: allocation %ld of %ld failed: error without a message", what, k, total);
            errors++;
        } else if (atomic_load(&n_failed)) {
            ok++;   /* the allocation was optional (a cache, a faster path) */
            fprintf(stderr, "alloc_fail: %s: allocation %ld failed and it still succeeded\n", what, k);
        }
    }
    printf("alloc_fail: %s: %ld allocations; failing each: %ld clean errors, %ld tolerated\n", what, total,
           errors, ok);
    fflush(stdout);
    return total;
}

Test(alloc_fail, every_allocation_of_load_and_step_fails_cleanly, .timeout = 1800) {
    char dir[1024];
    fail_each("load + 2 steps of golden/tiny-f32", scenario, test_data_path(dir, sizeof dir, "golden/tiny-f32"));
}

/* The shipped model's tokenizer: load, encode a line with special tokens and non-ASCII, decode. */
static int tokenizer_scenario(const char *dir, spex_err_t *err) {
    tokenizer_t *t = tokenizer_load(dir, err);
    if (!t) return -1;
    static const char text[] = "It is a truth universally acknowledged, caf\xc3\xa9 \xe6\x97\xa5 2024!\n\n  x";
    int32_t *ids = NULL;
    size_t n = 0, len;
    int rc = tokenizer_encode(t, text, sizeof text - 1, true, &ids, &n, err);
    char *back = rc ? NULL : tokenizer_decode(t, ids, n, true, &len, err);
    if (!rc && !back) rc = -1;
    free(back);
    free(ids);
    tokenizer_free(t);
    return rc;
}

Test(alloc_fail, every_allocation_of_the_tokenizer_fails_cleanly, .timeout = 600) {
    fail_each("tokenizer of models/austen-moe", tokenizer_scenario, SPEX_TEST_DATA "/../../models/austen-moe");
}
