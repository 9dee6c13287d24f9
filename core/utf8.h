/* utf8.h - the one strict UTF-8 check every layer uses (the tokenizer, JSON
 * escaping, streaming text out): a sequence is valid when it is the shortest
 * form of a code point in U+0000..U+10FFFF that is not a surrogate, exactly
 * the rule of Rust's str and Hugging Face's tokenizers. */
#ifndef SPEX_UTF8_H
#define SPEX_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* Bytes a sequence starting with lead byte c needs (1..4), 0 if c cannot start one. */
size_t utf8_seq_len(unsigned char c);

/* Length (1..4) of the valid sequence at s[0 .. n), 0 if it is invalid or cut short. */
size_t utf8_valid_len(const unsigned char *s, size_t n);

/* The code point of one valid sequence of len bytes (as measured by utf8_valid_len). */
uint32_t utf8_decode(const unsigned char *s, size_t len);

#endif
