/* tokenizer.h - text <-> token ids for Hugging Face byte-level BPE tokenizers
 * (tokenizer.json), as used by DeepSeek-V3, GPT-2 and Llama 3.
 *
 * Encoding follows the Hugging Face `tokenizers` pipeline step for step, so ids
 * match it exactly:
 *   1. added tokens (e.g. "<｜begin▁of▁sentence｜>") are cut out of the raw text,
 *      leftmost-longest, first those with normalized=false, then the others;
 *   2. every remaining span goes through the pre-tokenizer: each Split regex of
 *      the Sequence splits every piece of the previous step (matches and the gaps
 *      between them both become pieces, "Isolated"); ByteLevel maps bytes to the
 *      GPT-2 alphabet;
 *   3. each piece is BPE-merged by merge rank.
 * Decoding concatenates the raw bytes of each token (ByteLevel decoder).
 *
 * Supported tokenizer.json subset (anything else is refused at load with an
 * error naming the field): normalizer null / absent / empty Sequence;
 * pre_tokenizer ByteLevel (add_prefix_space false) optionally preceded by Split
 * steps in a Sequence (behavior Isolated, invert false, pattern Regex or
 * String); model BPE (no dropout, no subword prefix/suffix, no byte_fallback);
 * decoder ByteLevel. The post_processor is ignored: BOS is added by the caller
 * through `add_bos`.
 *
 * Text that is not valid UTF-8 (which Hugging Face refuses) is still encoded:
 * each run of invalid bytes becomes its own piece, so decode(encode(x)) == x
 * for any bytes.
 *
 * Thread safety: a loaded tokenizer is immutable; encode/decode/lookups on one
 * tokenizer may run concurrently from several threads (all scratch state,
 * including the BPE cache, lives in the call). tokenizer_load itself initialises
 * Oniguruma, whose one-time setup is not thread-safe: load from one thread. */
#ifndef SPEX_TOKENIZER_H
#define SPEX_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

typedef struct tokenizer tokenizer_t;

/* path = a model directory (reads tokenizer.json and, if present,
 * tokenizer_config.json for bos_token/eos_token/add_bos_token) or a path to a
 * tokenizer.json file (tokenizer_config.json is then looked for next to it). */
tokenizer_t *tokenizer_load(const char *path, spex_err_t *err);
void tokenizer_free(tokenizer_t *t);

/* Encode `len` bytes of `text` (need not be NUL-terminated). On success *ids is
 * malloc'ed (free it; may be NULL when *n_ids == 0) and 0 is returned. With
 * add_bos the BOS id is prepended (error if the tokenizer has none). */
int tokenizer_encode(const tokenizer_t *t, const char *text, size_t len, bool add_bos, int32_t **ids,
                     size_t *n_ids, spex_err_t *err);

/* Concatenated bytes of the tokens; malloc'ed and NUL-terminated, *out_len (if
 * not NULL) = length without the NUL. May hold invalid UTF-8 when the ids cut a
 * character. skip_special drops added tokens marked special (BOS, EOS, ...).
 * An id outside [0, vocab_size) or with no token is an error. */
char *tokenizer_decode(const tokenizer_t *t, const int32_t *ids, size_t n, bool skip_special, size_t *out_len,
                       spex_err_t *err);

/* Raw bytes of one token after ByteLevel decoding (not NUL-terminated), for
 * streaming output; NULL if the id is out of range or unused. */
const char *tokenizer_token_bytes(const tokenizer_t *t, int32_t id, size_t *len);

/* True if `id` is an added token marked special (BOS, EOS, chat markers...). */
bool tokenizer_is_special(const tokenizer_t *t, int32_t id);

/* Highest id + 1 over the vocabulary and the added tokens. */
int tokenizer_vocab_size(const tokenizer_t *t);

/* From tokenizer_config.json; -1 if none. */
int32_t tokenizer_bos_id(const tokenizer_t *t);
int32_t tokenizer_eos_id(const tokenizer_t *t);
/* tokenizer_config.json's add_bos_token (false if absent): what Hugging Face
 * transformers does by default, for callers that want the same. */
bool tokenizer_add_bos_default(const tokenizer_t *t);

/* Id of a token given as written in tokenizer.json: an added token's content
 * (e.g. "<｜end▁of▁sentence｜>") or a vocabulary entry in its byte-level form
 * (e.g. "Ġthe"). -1 if absent. */
int32_t tokenizer_token_id(const tokenizer_t *t, const char *token_string);

/* ---- Streaming UTF-8 for terminal output ----
 * Tokens can end in the middle of a multi-byte character. Push each token's
 * bytes through a utf8_stream and print only what it returns: complete
 * characters are released, an incomplete tail is held until the next push.
 * Bytes that can never start or continue a valid character are passed through
 * as they are (the text was not valid UTF-8 to begin with). */
typedef struct utf8_stream {
    unsigned char pending[4];
    size_t n_pending;
} utf8_stream_t;

#define UTF8_STREAM_INIT {{0}, 0}

/* Append `len` bytes; writes the bytes that are ready to `out` (capacity must be
 * at least len + 4) and returns how many were written. */
size_t utf8_stream_push(utf8_stream_t *s, const char *bytes, size_t len, char *out);
/* At the end of output: writes any held bytes (at most 3) to out, returns count. */
size_t utf8_stream_flush(utf8_stream_t *s, char *out);

#endif
