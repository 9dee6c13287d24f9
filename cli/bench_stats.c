/* bench_stats.c - see bench_stats.h. */
#include "cli/bench_stats.h"

#include <stdlib.h>

int samples_add(samples_t *s, double x, int times) {
    for (int i = 0; i < times; i++) {
        if (s->n == s->cap) {
            size_t cap = s->cap ? s->cap * 2 : 1024;
            double *v = realloc(s->v, cap * sizeof *v);
            if (!v) return -1;
            s->v = v;
            s->cap = cap;
        }
        s->v[s->n++] = x;
    }
    return 0;
}

int samples_merge(samples_t *dst, const samples_t *src) {
    for (size_t k = 0; k < src->n; k++)
        if (samples_add(dst, src->v[k], 1)) return -1;
    return 0;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

void samples_sort(samples_t *s) {
    if (s->n) qsort(s->v, s->n, sizeof *s->v, cmp_double);
}

double percentile(const samples_t *s, double p) {
    if (s->n == 0) return 0;
    size_t k = (size_t)(p / 100.0 * (double)s->n + 0.999999);
    return s->v[k == 0 ? 0 : k > s->n ? s->n - 1 : k - 1];
}

void samples_free(samples_t *s) {
    free(s->v);
    *s = (samples_t){0};
}
