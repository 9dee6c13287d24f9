/* codec.h - compression of activation rows sent between coordinator and expert ranks.
 *
 * A payload is a matrix x[rows, cols] of f32 (token rows of `hidden` channels).
 * The codec is chosen on the command line (`--codec`) and must be the same on
 * both ends; the payload carries no header of its own (the transport message
 * holds rows, cols, length and a codec_checksum()). Every multi-byte field is
 * little-endian whatever the host, so ranks on different machines agree.
 *
 * Element codecs and their "plain" layout (n = rows * cols, nb = ceil(cols/128)):
 *   raw   n x f32 (bit pattern)                                   lossless
 *   bf16  n x bf16, round to nearest even (core/dtype.c)           lossy
 *   fp8   rows*nb x f32 scale, then n x e4m3 code                  lossy
 *         (all scales first, then all codes, both row-major: each stream is
 *          homogeneous, which is what zstd and the byte shuffle below want)
 *
 * fp8 (DeepSeek-style block quantisation, block = 128 channels of one row):
 *   amax  = max |x| over the FINITE values of the block
 *   scale = amax / 448 rounded up to the next f32 (so |x / scale| <= 448 and no
 *           value is ever saturated by rounding; a tiny amax never gives scale 0),
 *           nudged down one ulp in the one case where 448 * scale would overflow
 *   code  = e4m3(x / scale) (round to nearest even);   decode: x' = e4m3 value * scale
 *   An all-zero block has scale 0 and decodes to zeros (the sign of -0 is kept).
 *   NaN and +-Inf both become the e4m3 NaN code (sign kept) and decode to NaN:
 *   e4m3 "fn" has no infinity, and turning an overflow into a finite number would
 *   hide a numerical blow-up on the worker. They do not enter amax, so the finite
 *   neighbours of a non-finite value keep their full precision.
 *   Error bound per element (tested): with q = x / scale, e4m3 rounding errs by at
 *   most half an ulp: 2^-4 |q| for normal q, 2^-10 below 2^-6 (subnormal step 2^-9);
 *   adding the f32 rounding of the division, the multiply and of scale itself:
 *     |x - x'| <= (2^-4 + 2^-20) |x| + 2^-18 amax + 2^-149
 *   and over the block |x - x'| <= 16 * scale ~= amax * 2^-4.8 < amax * 2^-4.
 *
 * bf16: |x - x'| <= 2^-8 |x| for normal values, <= 2^-134 for subnormals; Inf is
 *   kept, NaN stays NaN (made quiet, sign kept); finite values above the largest
 *   bf16 (~3.39e38) round to Inf as round-to-nearest-even prescribes.
 * raw: every bit pattern is kept (-0, NaN payloads, Inf, subnormals).
 *
 * "+zstd": the plain layout is byte-shuffled (for each stream of w-byte elements:
 *   all byte 0s, then all byte 1s, ... - the sign/exponent bytes of floats are far
 *   more predictable than the mantissa bytes and zstd's entropy coder only sees
 *   that when they are not interleaved), then compressed as one zstd frame at the
 *   codec's level (default 1: fast). Decoding checks the frame's content size.
 *   Measured on Gaussian activations (256 x 7168, level 1), ratio to the plain
 *   layout without -> with the shuffle: raw 1.08 -> 1.19, bf16 1.28 -> 1.46;
 *   fp8 1.12 either way (scales then codes 1.122 vs scales per row 1.118).
 *   On incompressible input zstd adds a few bytes of framing (never more than
 *   codec_max_encoded()).
 *
 * Decoding never trusts the input: a wrong length, a truncated or corrupt zstd
 * frame, or an fp8 scale that is negative / non-finite fails with a message; it
 * never reads or writes out of bounds. Corruption that still decodes (a flipped
 * mantissa bit) is the checksum's job, not the codec's.
 *
 * Threads: a codec_t is a plain value; a codec_ctx_t (zstd contexts, scratch
 * buffers, the e4m3 decode table) belongs to one thread or stream at a time. */
#ifndef SPEX_CODEC_H
#define SPEX_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

#define CODEC_FP8_BLOCK 128          /* channels per fp8 scale */
#define CODEC_FP8_MAX 448.0f         /* largest finite e4m3 value */
#define CODEC_ZSTD_LEVEL_DEFAULT 1

typedef enum { CODEC_RAW = 0, CODEC_BF16, CODEC_FP8 } codec_kind_t;

typedef struct codec {
    codec_kind_t kind;
    bool zstd;        /* compress the (shuffled) plain layout with zstd */
    int zstd_level;   /* zstd level when zstd (ZSTD_minCLevel()..ZSTD_maxCLevel()) */
} codec_t;

typedef struct codec_ctx codec_ctx_t;

/* Parse "<kind>[+zstd[:<level>]]", kind = raw | bf16 | fp8, e.g. "raw",
 * "bf16+zstd", "fp8+zstd:3", "fp8+zstd:-5" (negative: zstd's faster modes; 0:
 * zstd's default, 3). On error *out is untouched and the message names the spec. */
int codec_parse(const char *spec, codec_t *out, spex_err_t *err);

/* The spec codec_parse() reads back to *c ("fp8+zstd", "bf16+zstd:3"); returns buf. */
const char *codec_name(const codec_t *c, char *buf, size_t cap);

/* True for raw and raw+zstd: decode(encode(x)) is bit-identical to x. */
bool codec_lossless(const codec_t *c);

/* Bytes of the plain layout for x[rows, cols] (before zstd). 0 if rows or cols is
 * negative or the size does not fit in size_t. */
size_t codec_plain_size(codec_kind_t kind, int rows, int cols);

/* Upper bound of encoded bytes for x[rows, cols]: size `out` with it. 0 for an
 * invalid shape (codec_encode() then fails and says why). */
size_t codec_max_encoded(const codec_t *c, int rows, int cols);

/* Encode x[rows, cols] into out[0 .. cap); *out_len = bytes written. */
int codec_encode(const codec_t *c, const float *x, int rows, int cols, uint8_t *out, size_t cap, size_t *out_len,
                 codec_ctx_t *ctx, spex_err_t *err);

/* Decode in[0 .. len) into exactly x[rows, cols]. Fails cleanly on a length that
 * does not match the shape, on truncated or corrupt input; x may be partly
 * written on failure. */
int codec_decode(const codec_t *c, const uint8_t *in, size_t len, int rows, int cols, float *x, codec_ctx_t *ctx,
                 spex_err_t *err);

/* Reusable state for codec_encode/decode: zstd contexts and scratch that grows to
 * the largest payload seen. One per thread or stream. NULL + message on failure. */
codec_ctx_t *codec_ctx_create(spex_err_t *err);
void codec_ctx_free(codec_ctx_t *ctx);

/* XXH32 (seed 0) of p[0 .. n), computed by libxxhash: message integrity for the
 * transport. Fast, and the same value on every host; (NULL, 0) is the empty message. */
uint32_t codec_checksum(const uint8_t *p, size_t n);

/* ---- fp8 block quantisation (the building blocks of CODEC_FP8, codec_fp8.c) ---- */

/* Scale of a block whose largest finite |x| is amax (>= 0), as described above. */
float codec_fp8_scale(float amax);

/* Plain fp8 layout <-> x (out / in hold codec_plain_size(CODEC_FP8, rows, cols)
 * bytes). `lut` is the 256-entry e4m3 -> f32 table (lut[i] = e4m3_to_f32(i)).
 * Decoding rejects a negative or non-finite scale (corrupt input), naming it. */
void codec_fp8_encode_plain(const float *x, int rows, int cols, uint8_t *out);
int codec_fp8_decode_plain(const uint8_t *in, int rows, int cols, const float lut[256], float *x, spex_err_t *err);

#endif
