/* experts_local.h - the in-process MoE backend: every routed expert of every
 * MoE layer in this process (world size 1, the default without mpirun), as
 * one core/expert_shard holding all ids. Nothing is encoded: rows go from the
 * router straight into the shard. */
#ifndef SPEX_EXPERTS_LOCAL_H
#define SPEX_EXPERTS_LOCAL_H

#include "core/config.h"
#include "core/matmul.h"
#include "core/safetensors.h"
#include "coordinator/model/moe_backend.h"

/* Load the routed experts of all MoE layers (main and MTP) from the store.
 * `ex` (threads, SIMD path) must outlive the backend. */
moe_backend_t *experts_local_create(const spex_config_t *cfg, const tensor_store_t *ts, const exec_t *ex,
                                    spex_err_t *err);

/* Tokens routed to each expert so far: [n_layers_total][n_routed_experts]
 * (rows of non-MoE layers stay 0). NULL if `b` is not a local backend. */
const int64_t *experts_local_load_counts(const moe_backend_t *b);

#endif
