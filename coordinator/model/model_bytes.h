/* model_bytes.h - the weight bytes one decoded token must read: what bounds a
 * memory-bound decode step. Every weight of the forward except the routed
 * experts, plus top-k routed experts per MoE layer (each token visits k
 * distinct experts), plus one embedding row. Read by bench/bench_decode.c
 * (achieved bandwidth) and `spex bench spec --project` (bytes per token);
 * also the checkpoint's size on disk. */
#ifndef SPEX_MODEL_BYTES_H
#define SPEX_MODEL_BYTES_H

#include <stdint.h>

#include "coordinator/model/model.h"

/* A 1-row main forward: embed row, decoder layers, final norm's lm_head. */
uint64_t model_decode_bytes(const model_t *m);

/* A 1-row forward of MTP module k (0 if not loaded): embed row, eh_proj, its
 * decoder layer, shared_head.head. */
uint64_t model_mtp_bytes(const model_t *m, int k);

/* The checkpoint's weight files, summed. */
uint64_t model_file_bytes(const model_t *m);

#endif
