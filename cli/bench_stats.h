/* bench_stats.h - latency samples of the load generator (`spex bench serve`):
 * a growable array of seconds and its nearest-rank percentiles. */
#ifndef SPEX_CLI_BENCH_STATS_H
#define SPEX_CLI_BENCH_STATS_H

#include <stddef.h>

typedef struct samples {
    double *v;
    size_t n, cap;
} samples_t;

/* Append x `times` times; -1 when out of memory. */
int samples_add(samples_t *s, double x, int times);
/* Append every sample of src. */
int samples_merge(samples_t *dst, const samples_t *src);
void samples_sort(samples_t *s);
/* Nearest-rank percentile of a sorted set; 0 when empty. */
double percentile(const samples_t *s, double p);
void samples_free(samples_t *s);

#endif
