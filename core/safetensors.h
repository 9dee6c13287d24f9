/* safetensors.h - read-only access to a checkpoint's tensors by name.
 *
 * A tensor_store_t opens a Hugging Face model directory: either one
 * `model.safetensors` or the shards listed in `model.safetensors.index.json`.
 * Each file is mmap'ed read-only and its JSON header is parsed and validated up
 * front (header length within the file, dtype known, shape * dtype size == byte
 * range, ranges inside the data section and not overlapping). Tensor bytes are
 * only touched when loaded, so a process that loads a subset of tensors (an
 * expert worker) only pays resident memory for that subset.
 *
 * Loading converts to f32. FP8 (F8_E4M3) weights are dequantised with their
 * `<name>_scale_inv` companion tensor: F32 of shape [ceil(out/B0), ceil(in/B1)]
 * where {B0,B1} is the block size (128x128 in DeepSeek-V3); element (r, c) is
 * multiplied by scale_inv[r / B0][c / B1]. */
#ifndef SPEX_SAFETENSORS_H
#define SPEX_SAFETENSORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "dtype.h"
#include "error.h"

#define ST_MAX_DIMS 8

typedef struct st_tensor {
    const char *name;
    spex_dtype_t dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    int64_t numel;
    const uint8_t *data;      /* points into the file's mapping */
    size_t nbytes;
    int file;                 /* index into the store's files */
} st_tensor_t;

/* "[a,b,c]" into buf[cap] (cut short if it does not fit), for error messages; returns buf. */
const char *st_shape_str(char *buf, size_t cap, int ndim, const int64_t *shape);

typedef struct tensor_store tensor_store_t;

/* Open `dir` (model directory). fp8_block = block size for *_scale_inv
 * dequantisation ({128,128} for DeepSeek-V3; from config quantization_config). */
tensor_store_t *tensor_store_open(const char *dir, const int fp8_block[2], spex_err_t *err);
/* Open a single .safetensors file (tests, tools). */
tensor_store_t *tensor_store_open_file(const char *path, const int fp8_block[2], spex_err_t *err);
void tensor_store_free(tensor_store_t *ts);

/* How weights loaded from this store are held (core/linear.h): `copy` puts
 * each in anonymous memory (transparent huge pages) instead of using the file
 * mapping in place; `prefault` touches every mapped page at load so the first
 * tokens are not page-fault bound. Default: in place, not prefaulted. */
typedef struct tensor_residency {
    bool copy, prefault;
} tensor_residency_t;
void tensor_store_set_residency(tensor_store_t *ts, tensor_residency_t r);
tensor_residency_t tensor_store_residency(const tensor_store_t *ts);

/* Unmap from this process the file pages a load touched through the mappings
 * (madvise MADV_DONTNEED; the page cache keeps them). With `copy` residency a
 * finished load reads nothing there any more, yet those pages count in the
 * process's RSS: small tensors (FP8 block scales, norms) are read in place,
 * and each read maps the kernel's fault-around window with it, 116 MB for
 * bench-medium FP8's 835 scale tensors. A later read through the mapping
 * still works: the mapping is read-only, so a page comes back from the file. */
void tensor_store_release_mapped(const tensor_store_t *ts);

/* Lookup; NULL if absent. */
const st_tensor_t *tensor_store_find(const tensor_store_t *ts, const char *name);
/* Number of tensors and i-th tensor (in sorted-name order). */
size_t tensor_store_count(const tensor_store_t *ts);
const st_tensor_t *tensor_store_at(const tensor_store_t *ts, size_t i);
/* Path of file i (for error messages). */
const char *tensor_store_file_path(const tensor_store_t *ts, int file);
/* Number of files, the size in bytes of file i, the directory or file the store was
 * opened from, and the FP8 block size in use (a NULL or {0,0} block at open means
 * DeepSeek-V3's 128x128). */
int tensor_store_file_count(const tensor_store_t *ts);
uint64_t tensor_store_file_size(const tensor_store_t *ts, int file);
const char *tensor_store_origin(const tensor_store_t *ts);
void tensor_store_fp8_block(const tensor_store_t *ts, int block[2]);

/* Load tensor `name` as f32 into `dst` (numel floats), checking that it has
 * exactly `ndim` dims equal to `shape` (error names file, tensor, expected and
 * actual shapes). F8_E4M3 uses its scale_inv companion (error if missing or of
 * the wrong shape). shape == NULL skips the shape check (tools). */
int tensor_store_load_f32(const tensor_store_t *ts, const char *name, int ndim, const int64_t *shape,
                          float *dst, spex_err_t *err);

/* A copy of tensor t's bytes in the store's weight arena (core/weight_arena.h:
 * anonymous huge-page chunks), read with tensor_store_read; valid until
 * released to tensor_store_arena(ts) or the store is freed. */
void *tensor_store_copy(const tensor_store_t *ts, const st_tensor_t *t, spex_err_t *err);
struct weight_arena *tensor_store_arena(const tensor_store_t *ts);

/* Read tensor t's bytes (t->nbytes) from its file into dst with pread, without
 * touching the mapping (so the copy costs no page faults of the mapping). */
int tensor_store_read(const tensor_store_t *ts, const st_tensor_t *t, void *dst, spex_err_t *err);

/* 0 if t has exactly `ndim` dims equal to `shape`, else an error naming the
 * file, tensor and both shapes (shape NULL: no check). */
int tensor_store_check_shape(const tensor_store_t *ts, const st_tensor_t *t, int ndim, const int64_t *shape,
                             spex_err_t *err);

/* The F32 block scales of 2-D F8_E4M3 tensor t (its `<name>_scale_inv`,
 * [ceil(rows/B0), ceil(cols/B1)]), malloc'ed; NULL with a message naming the
 * tensor when missing or misshapen. */
float *tensor_store_fp8_scales(const tensor_store_t *ts, const st_tensor_t *t, spex_err_t *err);

/* Same, allocating: returns malloc'ed float[numel] or NULL on error. */
float *tensor_store_load_f32_alloc(const tensor_store_t *ts, const char *name, int ndim,
                                   const int64_t *shape, spex_err_t *err);

#endif
