/* synth.h - write a random DeepSeek-V3-architecture checkpoint in Hugging Face
 * layout (config.json + model.safetensors, or N shards + index) for any config
 * and dtype. Used by `spex synth`, tests and benchmarks that need models of a
 * given size without training one.
 *
 * Tensor names and shapes come from core/model_check.h (the same table the
 * loader checks against). Values are deterministic in (seed, tensor name), so
 * they do not depend on sharding or dtype, and synth_tensor_values() recomputes
 * the f32 value of any tensor for round-trip checks.
 *
 * dtype layouts:
 *   F32 / BF16 / F16: every tensor in that dtype except e_score_correction_bias (F32).
 *   FP8: projections (MT_LINEAR) F8_E4M3 + F32 `<name>_scale_inv` per 128x128 block
 *        (scale = block amax / 448); embeddings, heads, norms, router, eh_proj BF16;
 *        e_score_correction_bias F32 (the layout of DeepSeek-V3's release).
 *
 * Init (keeps activations O(1) through the layers): projections uniform with
 * std 0.5/sqrt(fan_in); router and heads std 1/sqrt(hidden); embeddings std 1;
 * norms 1 + U(-0.05, 0.05); e_score_correction_bias U(-0.02, 0.02).
 *
 * Skew (`spex synth --skew S`, for load-balancing studies): each MoE layer's
 * e_score_correction_bias (selection only, gate weights unchanged) gets
 *     - SYNTH_SKEW_SCALE * S * ln(1 + rank(e))
 * where rank is a per-layer random permutation of the experts (seeded by the
 * seed and the tensor name): the popularity of the rank-r expert then falls
 * off roughly as (1 + r)^-S, a Zipf-like law (exp(-b / T) with T, the router
 * scores' spread, ~ SYNTH_SKEW_SCALE). Hot experts differ per layer, as in
 * trained models. S = 0: no change. */
#ifndef SPEX_TOOLS_SYNTH_H
#define SPEX_TOOLS_SYNTH_H

#include <stdbool.h>
#include <stdint.h>

#include "core/config.h"
#include "core/error.h"
#include "core/model_check.h"

typedef enum { SYNTH_F32 = 0, SYNTH_BF16, SYNTH_F16, SYNTH_FP8 } synth_dtype_t;

/* Called after each tensor is written: bytes of tensor data done / total. */
typedef void (*synth_progress_fn)(void *ctx, uint64_t done, uint64_t total);

typedef struct synth_opts {
    synth_dtype_t dtype;
    uint64_t seed;
    int shards;                   /* <= 1: model.safetensors; N: model-0000i-of-0000N.safetensors + index */
    bool overwrite;               /* replace a checkpoint already in the directory */
    double skew;                  /* Zipf-like exponent of expert popularity (0: none) */
    synth_progress_fn progress;   /* optional */
    void *progress_ctx;
} synth_opts_t;

/* "tiny" (the golden tiny-f32 config), "small", "medium", "large". */
int synth_preset(const char *name, spex_config_t *cfg, spex_err_t *err);
/* "f32" | "bf16" | "f16" | "fp8". */
int synth_dtype_parse(const char *s, synth_dtype_t *out);
const char *synth_dtype_name(synth_dtype_t d);

/* Bytes of tensor data (all files) a checkpoint of cfg in dtype takes. */
int synth_data_bytes(const spex_config_t *cfg, synth_dtype_t dtype, uint64_t *bytes, spex_err_t *err);

/* config.json text for cfg (malloc'ed; the golden files' keys, torch_dtype, and
 * quantization_config for FP8). NULL on out of memory. */
char *synth_config_json(const spex_config_t *cfg, synth_dtype_t dtype);

/* The f32 values (before any dtype rounding) of tensor t: numel floats. */
void synth_tensor_values(const model_tensor_t *t, uint64_t seed, float *out);

/* Scale of the skew bias: about the spread of the sigmoid router scores. */
#define SYNTH_SKEW_SCALE 0.1
/* Add the skew to a router bias tensor's values (no-op for other tensors or skew <= 0). */
void synth_skew_bias(const model_tensor_t *t, uint64_t seed, double skew, float *bias);

/* Validate cfg (as config_parse would) and write the checkpoint into dir
 * (created if missing; an existing checkpoint there is an error unless
 * opts->overwrite). Files are written tensor by tensor, so memory stays at
 * about the largest tensor. */
int synth_write(const char *dir, const spex_config_t *cfg, const synth_opts_t *opts, spex_err_t *err);

#endif
