/* safetensors_write.h - write a .safetensors file (used by `spex synth` and tests).
 *
 * Collect tensors (name, dtype, shape, raw little-endian bytes) and write them
 * with a header sorted by name, 8-byte aligned, `__metadata__: {"format":"pt"}`. */
#ifndef SPEX_SAFETENSORS_WRITE_H
#define SPEX_SAFETENSORS_WRITE_H

#include <stddef.h>
#include <stdint.h>
#include "dtype.h"
#include "error.h"

typedef struct st_writer st_writer_t;

st_writer_t *st_writer_create(void);
void st_writer_free(st_writer_t *w);
/* Adds a copy of `data` (nbytes must equal prod(shape) * dtype_size). */
int st_writer_add(st_writer_t *w, const char *name, spex_dtype_t dtype, int ndim, const int64_t *shape,
                  const void *data, size_t nbytes, spex_err_t *err);
/* Write everything to `path` (atomically: temp file + rename). */
int st_writer_write(st_writer_t *w, const char *path, spex_err_t *err);

/* Streaming, for files larger than memory: declare every tensor without data,
 * st_writer_begin() writes the header to a temp file beside `path`,
 * st_writer_put() appends data bytes (tensors in declaration order, each in one
 * or more chunks), st_writer_finish() checks every declared byte was written and
 * renames into place. st_writer_free() before finish removes the temp file.
 * Data is laid out in declaration order (st_writer_add order too); the header
 * is sorted by name either way. */
int st_writer_declare(st_writer_t *w, const char *name, spex_dtype_t dtype, int ndim, const int64_t *shape,
                      spex_err_t *err);
int st_writer_begin(st_writer_t *w, const char *path, spex_err_t *err);
int st_writer_put(st_writer_t *w, const void *data, size_t nbytes, spex_err_t *err);
int st_writer_finish(st_writer_t *w, spex_err_t *err);
/* Total bytes of tensor data declared or added so far. */
uint64_t st_writer_data_bytes(const st_writer_t *w);

#endif
