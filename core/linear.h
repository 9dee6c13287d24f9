/* linear.h - a linear layer y = x W^T over the checkpoint's own weights.
 *
 * W is [out, in] row-major (PyTorch nn.Linear layout) in the dtype it is
 * stored in (F32, BF16, F16, or F8_E4M3 with 128x128 block scales): by
 * default the layer points into the mmap'ed safetensors file, so loading
 * copies nothing and a worker's resident memory is only the experts it uses.
 * The store's residency (tensor_store_set_residency) can ask for anonymous
 * copies instead, and for prefaulting the pages at load.
 *
 * Every product goes through core/matmul.h: one fixed order of operations per
 * output element, so a row's result never depends on the batch, the threads,
 * the rank or the SIMD path. */
#ifndef SPEX_LINEAR_H
#define SPEX_LINEAR_H

#include <stdbool.h>

#include "core/error.h"
#include "core/matmul.h"
#include "core/safetensors.h"

typedef struct linear {
    int out, in;
    wview_t w;            /* the stored matrix */
    void *owned;          /* the bytes w.data points to, when copied (else NULL: the file mapping) */
    struct weight_arena *arena;   /* where `owned` lives (NULL: malloc'ed, e.g. by a test) */
    float *owned_scale;   /* FP8 block scales (always a copy: small, and aligned) */
} linear_t;

/* Load tensor `name` (shape [out, in]) from the store. */
int linear_load(linear_t *l, const tensor_store_t *ts, const char *name, int out, int in, spex_err_t *err);
void linear_free(linear_t *l);

/* A layer over caller-owned f32 weights [out, in] (tests, tools); free not needed. */
linear_t linear_borrow_f32(const float *w, int out, int in);

/* y[n, out] = x[n, in] W^T. y must not alias x. */
static inline void linear_apply(const exec_t *ex, const linear_t *l, const float *x, float *y, int n) {
    matmul(ex, &l->w, x, y, n);
}

/* Bytes of the stored weights (what one pass reads). */
static inline uint64_t linear_bytes(const linear_t *l) { return wview_bytes(&l->w); }

/* Load a 1-D vector (norm weight, bias) of length d; returns malloc'ed floats or NULL. */
float *vector_load(const tensor_store_t *ts, const char *name, int d, spex_err_t *err);

#endif
