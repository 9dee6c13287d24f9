/* gen_config.h - a model's own decoding defaults: Hugging Face's
 * generation_config.json in the model directory, read as vLLM applies it.
 *
 * Fields read (every other field is ignored; null counts as absent):
 *   temperature     number >= 0 (0 = greedy)
 *   top_p           number in (0, 1]
 *   top_k           integer >= 0 (0 = off)
 *   max_new_tokens  integer >= 1
 *   eos_token_id    an integer or a list of integers (up to SPEX_MAX_EOS):
 *                   generation stops on any of them, besides the tokenizer's EOS
 *   bos_token_id, pad_token_id   integers (checked, reported; Spex takes BOS
 *                   from tokenizer_config.json and pads nothing)
 * Like vLLM, do_sample is not read: temperature alone decides greedy or not.
 * A missing file is not an error (no defaults); bad JSON or a field of the
 * wrong type or range is, naming the file and the field.
 *
 * Who applies it: `spex serve` and `spex batch` (defaults of requests that
 * leave a field out) and `spex generate` (defaults of options not given);
 * --no-generation-config turns it off. */
#ifndef SPEX_GEN_CONFIG_H
#define SPEX_GEN_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "coordinator/decode/eos_set.h"
#include "core/error.h"

typedef struct gen_config {
    bool found;                  /* the file exists */
    bool has_temperature, has_top_p, has_top_k, has_max_new_tokens;
    double temperature, top_p;
    long top_k, max_new_tokens;
    eos_set_t eos;               /* eos_token_id (empty when absent) */
    int32_t bos_id, pad_id;      /* -1 when absent */
} gen_config_t;

/* Read DIR/generation_config.json into *gc. vocab_size > 0 also checks every
 * token id against it. */
int gen_config_load(const char *dir, int vocab_size, gen_config_t *gc, spex_err_t *err);

/* One line saying what was read ("temperature 0.6, top_p 0.95, eos [1]"), for the start-up log. */
void gen_config_describe(const gen_config_t *gc, char *out, size_t len);

#endif
