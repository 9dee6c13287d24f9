/* testutil.h - helpers shared by the Criterion unit tests: paths to test data,
 * reading whole files, comparing float arrays with a stated tolerance. */
#ifndef SPEX_TESTUTIL_H
#define SPEX_TESTUTIL_H

#include <stddef.h>

/* Absolute path of `rel` under tests/data (static buffer per call site is not
 * used: writes into `out` of size `cap` and returns it). */
const char *test_data_path(char *out, size_t cap, const char *rel);

/* Read a whole file; returns malloc'ed NUL-terminated buffer or NULL. */
char *test_read_file(const char *path, size_t *len);

/* max |a[i] - b[i]| over n elements. */
double test_max_abs_diff(const float *a, const float *b, size_t n);

/* max |a[i] - b[i]| / max(|b[i]|, floor) over n elements. */
double test_max_rel_diff(const float *a, const float *b, size_t n, double floor);

/* Deterministic pseudo-random floats in [-scale, scale) (xorshift; seedable). */
void test_fill_random(float *x, size_t n, unsigned seed, float scale);

#endif
