/* eos_set.h - the token ids that end a sequence: the tokenizer's EOS plus any
 * generation_config.json adds (an eos_token_id list, as Llama 3 ships). A
 * small fixed-size set held by value in seq_params_t, so parameters stay plain
 * data. The engine checks it on every emitted token (coordinator/decode/engine.c,
 * seq_emit), after speculation has decided the token, so stopping on any
 * member keeps speculative decoding lossless. */
#ifndef SPEX_EOS_SET_H
#define SPEX_EOS_SET_H

#include <stdbool.h>
#include <stdint.h>

#define SPEX_MAX_EOS 16

typedef struct eos_set {
    int n;                       /* 0 = no stop token */
    int32_t id[SPEX_MAX_EOS];
} eos_set_t;

/* Add id (ignored when negative or already present); -1 when the set is full. */
int eos_set_add(eos_set_t *s, int32_t id);
/* Add every member of b to a; -1 when a fills up. */
int eos_set_merge(eos_set_t *a, const eos_set_t *b);
bool eos_set_has(const eos_set_t *s, int32_t id);

#endif
