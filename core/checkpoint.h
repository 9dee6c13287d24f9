/* checkpoint.h - opening a model directory the one way every loader does:
 * config.json parsed and validated (core/config.h), then the tensor store
 * (core/safetensors.h) with the FP8 block size from the config's
 * quantization_config (DeepSeek-V3's 128x128 when the config names none; the
 * store applies that default). The coordinator's model, the worker ranks,
 * `spex inspect` and `spex placement` all open checkpoints through here, so a
 * directory means the same to each of them. */
#ifndef SPEX_CHECKPOINT_H
#define SPEX_CHECKPOINT_H

#include "core/config.h"
#include "core/error.h"
#include "core/safetensors.h"

/* Parse `dir`/config.json into *cfg (no tensors touched). */
int checkpoint_config(const char *dir, spex_config_t *cfg, spex_err_t *err);

/* checkpoint_config, then open the safetensors of `dir` (headers validated,
 * files mapped, no weights read). NULL on error; free with tensor_store_free. */
tensor_store_t *checkpoint_open(const char *dir, spex_config_t *cfg, spex_err_t *err);

#endif
