/* utf8.c - see utf8.h. */
#include "core/utf8.h"

size_t utf8_seq_len(unsigned char c) {
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf) return 2;
    if (c >= 0xe0 && c <= 0xef) return 3;
    if (c >= 0xf0 && c <= 0xf4) return 4;
    return 0;
}

size_t utf8_valid_len(const unsigned char *s, size_t n) {
    if (n == 0) return 0;
    size_t len = utf8_seq_len(s[0]);
    if (len == 0 || n < len) return 0;
    if (len == 1) return 1;
    unsigned lo = 0x80, hi = 0xbf;   /* allowed range of the second byte */
    if (s[0] == 0xe0) lo = 0xa0;        /* no overlongs */
    else if (s[0] == 0xed) hi = 0x9f;   /* no surrogates */
    else if (s[0] == 0xf0) lo = 0x90;   /* no overlongs */
    else if (s[0] == 0xf4) hi = 0x8f;   /* nothing above U+10FFFF */
    if (s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if ((s[i] & 0xc0) != 0x80) return 0;
    return len;
}

uint32_t utf8_decode(const unsigned char *s, size_t len) {
    static const unsigned char lead_mask[5] = {0, 0x7f, 0x1f, 0x0f, 0x07};
    uint32_t cp = s[0] & lead_mask[len];
    for (size_t i = 1; i < len; i++) cp = cp << 6 | (s[i] & 0x3f);
    return cp;
}
