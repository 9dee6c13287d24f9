/* linear.c - see linear.h. */
#include "linear.h"

#include <cblas.h>
#include <stdlib.h>

#include "core/gemm_rows.h"

int linear_load(linear_t *l, const tensor_store_t *ts, const char *name, int out, int in, spex_err_t *err) {
    int64_t shape[2] = {out, in};
    l->out = out;
    l->in = in;
    l->w = tensor_store_load_f32_alloc(ts, name, 2, shape, err);
    return l->w ? 0 : -1;
}

void linear_free(linear_t *l) {
    if (!l) return;
    free(l->w);
    l->w = NULL;
}

void linear_forward(const linear_t *l, const float *x, float *y, int n) {
    if (n <= 0) return;
    /* y[n,out] = x[n,in] * W^T[in,out] */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, l->out, l->in, 1.0f, x, l->in, l->w, l->in, 0.0f,
                y, l->out);
}

void linear_forward_rows(const linear_t *l, const float *x, float *y, int n) {
    gemm_rows(x, l->w, y, n, l->out, l->in);
}

float *vector_load(const tensor_store_t *ts, const char *name, int d, spex_err_t *err) {
    int64_t shape[1] = {d};
    return tensor_store_load_f32_alloc(ts, name, 1, shape, err);
}
