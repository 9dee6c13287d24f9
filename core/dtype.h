/* dtype.h - element types found in safetensors files and their conversion to f32.
 *
 * Conversions are exact where the format allows (bf16/f16/e4m3 -> f32 are exact);
 * f32 -> bf16/f16 round to nearest even, f32 -> e4m3 rounds to nearest even and
 * saturates at +-448 (the OCP FP8 "fn" variant: no infinities, NaN = 0x7f/0xff). */
#ifndef SPEX_DTYPE_H
#define SPEX_DTYPE_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    DTYPE_F32 = 0, DTYPE_F16, DTYPE_BF16, DTYPE_F8_E4M3,
    DTYPE_F64, DTYPE_I64, DTYPE_I32, DTYPE_I16, DTYPE_I8, DTYPE_U8, DTYPE_BOOL,
    DTYPE_COUNT
} spex_dtype_t;

/* "F32", "BF16", ... (safetensors spelling). */
const char *dtype_name(spex_dtype_t t);
/* Parse a safetensors dtype string; returns -1 if unknown. */
int dtype_parse(const char *s, spex_dtype_t *out);
/* Bytes per element. */
size_t dtype_size(spex_dtype_t t);

float bf16_to_f32(uint16_t h);
uint16_t f32_to_bf16(float f);
float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);
float e4m3_to_f32(uint8_t b);
uint8_t f32_to_e4m3(float f);

/* Convert n elements of type `t` at `src` (little-endian, possibly unaligned) to f32.
 * Only floating dtypes are supported; returns -1 for others. */
int dtype_to_f32(spex_dtype_t t, const void *src, float *dst, size_t n);

#endif
