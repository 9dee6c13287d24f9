/* expert_digest.h - the content check of the routed experts: a 64-bit XXH3
 * digest of each (layer, expert) over the bytes of its tensors as stored
 * (gate_proj, up_proj, down_proj weights and, for FP8, their _scale_inv), with
 * each tensor's name, dtype and shape mixed in.
 *
 * The model identity (core/model_id.h) covers config.json and the safetensors
 * headers only, so a worker whose files have the same headers but other
 * weights passed the hello and computed garbage. The coordinator sends the
 * digests of each rank's pairs in the hello (coordinator/ep/expert_manifest.h
 * caches them beside the checkpoint); the worker computes the same over the
 * byte ranges it maps and refuses the session naming the first pair that
 * differs. Pairs are listed in ascending (layer, expert) order over MoE layers;
 * a digest is never 0 (0 marks "not computed"). */
#ifndef SPEX_EXPERT_DIGEST_H
#define SPEX_EXPERT_DIGEST_H

#include <stdbool.h>
#include <stdint.h>

#include "core/config.h"
#include "core/error.h"
#include "core/safetensors.h"

/* Bytes are read with pread into this grow-only buffer, not through the
 * file mapping: hashing must not leave every expert's pages mapped (resident)
 * in a process that does not compute with them (rank 0 hashes them all). */
typedef struct expert_digest_buf {
    uint8_t *p;
    size_t cap;
} expert_digest_buf_t;
void expert_digest_buf_free(expert_digest_buf_t *b);

/* Digest of expert e of layer `layer`; *bytes += the tensor bytes hashed
 * (may be NULL). Errors name the missing tensor or the file that failed. */
int expert_digest_one(const tensor_store_t *ts, int layer, int e, expert_digest_buf_t *buf, uint64_t *digest,
                      uint64_t *bytes, spex_err_t *err);

/* Every routed expert of every MoE layer (MTP included):
 * out[layer * n_routed_experts + e], 0 for dense layers. */
int expert_digest_all(const spex_config_t *cfg, const tensor_store_t *ts, uint64_t *out, uint64_t *bytes,
                      spex_err_t *err);

#endif
