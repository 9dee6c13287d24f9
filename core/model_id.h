/* model_id.h - a 64-bit identity of a checkpoint: FNV-1a over config.json and
 * the JSON header of every safetensors file (names, dtypes, shapes, offsets).
 * The coordinator sends it in its hello; a worker whose checkpoint differs
 * (another model, another dtype, another shard layout) refuses the session.
 * Weight bytes are not hashed: that would read the whole model on every rank. */
#ifndef SPEX_MODEL_ID_H
#define SPEX_MODEL_ID_H

#include <stdint.h>

#include "core/error.h"
#include "core/safetensors.h"

/* Identity of the checkpoint in `dir` whose tensors `ts` has opened. */
int model_identity(const char *dir, const tensor_store_t *ts, uint64_t *id, spex_err_t *err);

#endif
