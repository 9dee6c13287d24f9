/* linear.h - a linear layer y = x W^T as stored in Hugging Face checkpoints.
 *
 * W is [out, in] row-major (PyTorch nn.Linear layout). Weights are held in f32
 * (converted at load from F32/BF16/F16/F8_E4M3+scales); the product goes
 * through OpenBLAS sgemm, so a batch of rows costs one GEMM.
 *
 * Two kernels: OpenBLAS (fast, multi-threaded, but a row's last bits depend on
 * the batch around it) and gemm_rows (row-independent, see core/gemm_rows.h).
 * The engine uses the second wherever a result must not depend on batching:
 * decode and speculative verification steps, and every routed expert. */
#ifndef SPEX_LINEAR_H
#define SPEX_LINEAR_H

#include <stdbool.h>

#include "core/error.h"
#include "core/safetensors.h"

typedef struct linear {
    int out, in;
    float *w;          /* [out, in], owned */
} linear_t;

/* Load tensor `name` (shape [out, in]) from the store. */
int linear_load(linear_t *l, const tensor_store_t *ts, const char *name, int out, int in, spex_err_t *err);
void linear_free(linear_t *l);

/* y[n, out] = x[n, in] W^T. y must not alias x. */
void linear_forward(const linear_t *l, const float *x, float *y, int n);

/* Same product, but every output row depends only on its input row, bit for
 * bit, whatever the batch (core/gemm_rows.h). Used for the routed experts. */
void linear_forward_rows(const linear_t *l, const float *x, float *y, int n);

/* y = x W^T with the row-independent kernel when `exact`, else OpenBLAS. */
static inline void linear_apply(const linear_t *l, const float *x, float *y, int n, bool exact) {
    if (exact) linear_forward_rows(l, x, y, n);
    else linear_forward(l, x, y, n);
}

/* Load a 1-D vector (norm weight, bias) of length d; returns malloc'ed floats or NULL. */
float *vector_load(const tensor_store_t *ts, const char *name, int d, spex_err_t *err);

#endif
