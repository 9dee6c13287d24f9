/* linear.c - see linear.h: turning a checkpoint tensor into a weight view. */
#include "linear.h"
#include "weight_arena.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static bool kernel_dtype(spex_dtype_t t) {
    return t == DTYPE_F32 || t == DTYPE_BF16 || t == DTYPE_F16 || t == DTYPE_F8_E4M3;
}

/* Read one byte per page of [p, p + n) so the first forward does not fault. */
static void prefault(const uint8_t *p, size_t n) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    volatile uint8_t sink = 0;
    for (size_t i = 0; i < n; i += page) sink ^= p[i];
    if (n) sink ^= p[n - 1];
    (void)sink;
}

static int view_fp8(linear_t *l, const tensor_store_t *ts, const st_tensor_t *t, spex_err_t *err) {
    int block[2];
    tensor_store_fp8_block(ts, block);
    if (block[1] % 16)
        return spex_fail(err, "tensor '%s': FP8 block width %d is not a multiple of 16, which the kernels need",
                         t->name, block[1]);
    if (l->in > MM_FP8_MAX_IN)
        return spex_fail(err, "tensor '%s': FP8 matrix with %d input columns; the kernels take at most %d",
                         t->name, l->in, (int)MM_FP8_MAX_IN);
    if (!(l->owned_scale = tensor_store_fp8_scales(ts, t, err))) return -1;
    l->w.scale = l->owned_scale;
    l->w.b0 = block[0];
    l->w.b1 = block[1];
    l->w.scale_cols = (l->in + block[1] - 1) / block[1];
    return 0;
}

int linear_load(linear_t *l, const tensor_store_t *ts, const char *name, int out, int in, spex_err_t *err) {
    memset(l, 0, sizeof *l);
    l->out = out;
    l->in = in;
    const st_tensor_t *t = tensor_store_find(ts, name);
    if (!t) return spex_fail(err, "%s: missing tensor '%s'", tensor_store_origin(ts), name);
    int64_t shape[2] = {out, in};
    if (tensor_store_check_shape(ts, t, 2, shape, err)) return -1;
    if (!kernel_dtype(t->dtype))
        return spex_fail(err, "tensor '%s' in %s has dtype %s; a weight must be F32, BF16, F16 or F8_E4M3", name,
                         tensor_store_file_path(ts, t->file), dtype_name(t->dtype));
    l->w = (wview_t){.dtype = t->dtype, .out = out, .in = in, .data = t->data};
    if (t->dtype == DTYPE_F8_E4M3 && view_fp8(l, ts, t, err)) {
        linear_free(l);
        return -1;
    }
    tensor_residency_t r = tensor_store_residency(ts);
    if (r.copy) {
        if (!(l->owned = tensor_store_copy(ts, t, err))) {   /* huge-page arena: faster than the mapping */
            linear_free(l);
            return -1;
        }
        l->arena = tensor_store_arena(ts);
        l->w.data = l->owned;
    } else if (r.prefault) {
        prefault(t->data, t->nbytes);
    }
    return 0;
}

void linear_free(linear_t *l) {
    if (!l) return;
    if (l->arena) weight_arena_release(l->arena, l->owned);
    else free(l->owned);
    free(l->owned_scale);
    l->owned = NULL;
    l->owned_scale = NULL;
    l->w.data = NULL;
}

linear_t linear_borrow_f32(const float *w, int out, int in) {
    linear_t l = {.out = out, .in = in, .w = {.dtype = DTYPE_F32, .out = out, .in = in, .data = w}};
    return l;
}

float *vector_load(const tensor_store_t *ts, const char *name, int d, spex_err_t *err) {
    int64_t shape[1] = {d};
    return tensor_store_load_f32_alloc(ts, name, 1, shape, err);
}
