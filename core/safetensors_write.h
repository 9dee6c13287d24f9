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

#endif
