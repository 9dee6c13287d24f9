/* kernels.h - the elementwise and row-wise math of a transformer, on f32.
 *
 * Row-major everywhere: a matrix [n, d] is n rows of d contiguous floats.
 * These are deliberately plain loops in a fixed order (no reassociation, so a
 * row's result never depends on the machine); the matrix products are in
 * core/matmul.h. On AVX-512, expf runs 8 at a time, bit for bit libm's (kernels.c). */
#ifndef SPEX_KERNELS_H
#define SPEX_KERNELS_H

#include <stddef.h>

/* y[i,:] = x[i,:] / sqrt(mean(x[i,:]^2) + eps) * w    x, y: [n, d]; w: [d]. y may alias x. */
void rmsnorm(float *y, const float *x, const float *w, int n, int d, float eps);

/* In place: x[i] = silu(gate[i]) * x[i]  over n elements (SwiGLU's middle). */
void swiglu_inplace(float *x, const float *gate, size_t n);

/* In place softmax over one row of n; entries of -INFINITY get probability 0.
 * The normalising sum runs in 16 lanes and matmul.h's reduction tree (fixed order). */
void softmax_row(float *x, int n);

/* Index of the largest element (lowest index on ties). */
int argmax(const float *x, int n);

#endif
