/* expert_manifest.h - rank 0's content digests of every routed expert
 * (transport/expert_digest.h), cached beside the checkpoint.
 *
 * Computing them reads every routed expert's bytes once, which on a large
 * model is the cost of reading the checkpoint; so the first mpirun job writes
 * them to DIR/spex-expert-digests.bin (atomically: a temporary file renamed)
 * and later jobs read that file back. It is keyed by the model identity, the
 * shape, and the size and modification time of every safetensors file, and
 * carries its own checksum: any difference rebuilds it. A directory that
 * cannot be written is not an error: the digests are then computed at every
 * start (logged). */
#ifndef SPEX_EXPERT_MANIFEST_H
#define SPEX_EXPERT_MANIFEST_H

#include <stdbool.h>
#include <stdint.h>

#include "core/config.h"
#include "core/error.h"
#include "core/safetensors.h"

#define EXPERT_MANIFEST_NAME "spex-expert-digests.bin"

typedef struct expert_manifest_info {
    bool cached;       /* read from the file (else computed) */
    bool written;      /* computed and saved */
    uint64_t bytes;    /* expert bytes hashed (0 when cached) */
    double seconds;    /* time to read or compute */
} expert_manifest_info_t;

/* digests[n_layers * n_routed] (0 in dense layers), malloc'ed; NULL + err on failure. */
uint64_t *expert_manifest_get(const char *dir, const spex_config_t *cfg, const tensor_store_t *ts, uint64_t model_id,
                              expert_manifest_info_t *info, spex_err_t *err);

#endif
