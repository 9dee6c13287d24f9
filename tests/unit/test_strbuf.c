/* test_strbuf.c - the text utilities every layer shares (core/strbuf.h,
 * core/utf8.h, core/clock.h): appending, in-place writes, truncation and
 * out-of-memory handling of strbuf; the strict UTF-8 rule (overlongs,
 * surrogates, code points above U+10FFFF, cut-off sequences); the one JSON
 * string escaper, byte for byte and on random bytes (always valid JSON that
 * decodes to the valid parts of the input); and the clock's timespec
 * conversion and timed waits. */
#include <criterion/criterion.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/strbuf.h"
#include "core/utf8.h"

/* ---- strbuf ---- */

Test(strbuf, appends_and_grows_past_its_first_block) {
    strbuf_t b = {0};
    sb_str(&b, "n=");
    sb_printf(&b, "%d,%s", 42, "x");
    sb_add(&b, "\0z", 2);   /* binary bytes are kept, length counts them */
    cr_assert_eq(b.n, 8);
    cr_assert_eq(memcmp(b.p, "n=42,x\0z", 8), 0);
    cr_assert_eq(b.p[b.n], '\0');
    for (int i = 0; i < 1000; i++) sb_printf(&b, "%03d", i);
    cr_assert_eq(b.n, 8 + 3000);
    cr_assert_eq(memcmp(b.p + b.n - 6, "998999", 6), 0);
    cr_assert_geq(b.cap, b.n + 1);
    cr_assert_not(b.oom);
    sb_free(&b);
    cr_assert_null(b.p);
    cr_assert_eq(b.n, 0);
}

Test(strbuf, reserve_commit_truncate_reset) {
    strbuf_t b = {0};
    sb_str(&b, "abc");
    char *tail = sb_reserve(&b, 10);
    cr_assert_not_null(tail);
    cr_assert_eq(tail, b.p + 3);
    memcpy(tail, "defg", 4);
    sb_commit(&b, 4);
    cr_assert_str_eq(b.p, "abcdefg");
    sb_truncate(&b, 2);
    cr_assert_str_eq(b.p, "ab");
    sb_truncate(&b, 5);   /* longer than the text: ignored */
    cr_assert_str_eq(b.p, "ab");
    size_t cap = b.cap;
    sb_reset(&b);
    cr_assert_eq(b.n, 0);
    cr_assert_str_eq(b.p, "");
    cr_assert_eq(b.cap, cap, "reset keeps the memory");
    sb_free(&b);
}

Test(strbuf, take_hands_over_the_bytes_and_empties_the_buffer) {
    strbuf_t b = {0};
    size_t len = 99;
    char *empty = sb_take(&b, &len);   /* never appended: an empty string, not NULL */
    cr_assert_not_null(empty);
    cr_assert_str_eq(empty, "");
    cr_assert_eq(len, 0);
    free(empty);
    sb_str(&b, "hello");
    char *s = sb_take(&b, &len);
    cr_assert_str_eq(s, "hello");
    cr_assert_eq(len, 5);
    cr_assert_null(b.p);
    cr_assert_eq(b.n, 0);
    free(s);
}

Test(strbuf, out_of_memory_is_sticky_and_take_returns_null) {
    strbuf_t b = {0};
    sb_str(&b, "ok");
    sb_add(&b, "x", SIZE_MAX / 2);   /* cannot be allocated */
    cr_assert(b.oom);
    cr_assert_null(sb_reserve(&b, 1));
    sb_str(&b, "more");
    cr_assert_eq(b.n, 2, "appends after oom are ignored");
    size_t len = 7;
    cr_assert_null(sb_take(&b, &len));
    cr_assert_eq(len, 0);
    cr_assert_null(b.p);
}

Test(strbuf, json_ids_and_null) {
    strbuf_t b = {0};
    const int32_t ids[] = {5, -1, 2147483647};
    sb_json_ids(&b, ids, 3);
    sb_json_ids(&b, ids, 0);
    sb_json_cstr(&b, NULL);
    cr_assert_str_eq(b.p, "[5,-1,2147483647][]null");
    sb_free(&b);
}

/* ---- UTF-8 ---- */

static size_t vlen(const char *s) { return utf8_valid_len((const unsigned char *)s, strlen(s)); }

Test(utf8, valid_sequences_of_every_length) {
    cr_assert_eq(vlen("A"), 1);
    cr_assert_eq(vlen("\x7f"), 1);
    cr_assert_eq(vlen("\xc2\x80"), 2);           /* U+0080, the smallest 2-byte */
    cr_assert_eq(vlen("\xdf\xbf"), 2);
    cr_assert_eq(vlen("\xe0\xa0\x80"), 3);       /* U+0800 */
    cr_assert_eq(vlen("\xe2\x82\xac"), 3);       /* the euro sign */
    cr_assert_eq(vlen("\xed\x9f\xbf"), 3);       /* U+D7FF, just below the surrogates */
    cr_assert_eq(vlen("\xee\x80\x80"), 3);       /* U+E000, just above them */
    cr_assert_eq(vlen("\xf0\x90\x80\x80"), 4);   /* U+10000 */
    cr_assert_eq(vlen("\xf4\x8f\xbf\xbf"), 4);   /* U+10FFFF, the last code point */
    cr_assert_eq(vlen("\xe2\x82\xac tail"), 3, "only the first sequence is measured");
}

Test(utf8, invalid_sequences_are_zero) {
    cr_assert_eq(vlen("\x80"), 0, "lone continuation byte");
    cr_assert_eq(vlen("\xc0\x80"), 0, "overlong NUL");
    cr_assert_eq(vlen("\xc1\xbf"), 0, "overlong 2-byte");
    cr_assert_eq(vlen("\xe0\x9f\xbf"), 0, "overlong 3-byte");
    cr_assert_eq(vlen("\xed\xa0\x80"), 0, "surrogate U+D800");
    cr_assert_eq(vlen("\xed\xbf\xbf"), 0, "surrogate U+DFFF");
    cr_assert_eq(vlen("\xf0\x8f\xbf\xbf"), 0, "overlong 4-byte");
    cr_assert_eq(vlen("\xf4\x90\x80\x80"), 0, "above U+10FFFF");
    cr_assert_eq(vlen("\xf5\x80\x80\x80"), 0, "lead byte F5");
    cr_assert_eq(vlen("\xff"), 0);
    cr_assert_eq(vlen("\xe2\x82x"), 0, "bad continuation");
    cr_assert_eq(vlen("\xf0\x9f\x98" "A"), 0, "bad last continuation");
    cr_assert_eq(utf8_valid_len((const unsigned char *)"\xe2\x82\xac", 2), 0, "cut short by n");
    cr_assert_eq(utf8_valid_len((const unsigned char *)"A", 0), 0);
}

Test(utf8, seq_len_and_decode) {
    cr_assert_eq(utf8_seq_len('a'), 1);
    cr_assert_eq(utf8_seq_len(0xc1), 0);
    cr_assert_eq(utf8_seq_len(0xc2), 2);
    cr_assert_eq(utf8_seq_len(0xef), 3);
    cr_assert_eq(utf8_seq_len(0xf4), 4);
    cr_assert_eq(utf8_seq_len(0xf5), 0);
    cr_assert_eq(utf8_seq_len(0x80), 0);
    cr_assert_eq(utf8_decode((const unsigned char *)"\xe2\x82\xac", 3), 0x20ac);
    cr_assert_eq(utf8_decode((const unsigned char *)"\xf4\x8f\xbf\xbf", 4), 0x10ffff);
    cr_assert_eq(utf8_decode((const unsigned char *)"\xc3\xa9", 2), 0xe9);
}

/* ---- the JSON string escaper ---- */

static void check_escape(const char *in, size_t len, const char *want) {
    strbuf_t b = {0};
    sb_json_str(&b, in, len);
    cr_assert_str_eq(b.p, want);
    sb_free(&b);
}

Test(json_escape, byte_for_byte) {
    check_escape("", 0, "\"\"");
    check_escape("plain text", 10, "\"plain text\"");
    check_escape("q\"b\\", 4, "\"q\\\"b\\\\\"");
    check_escape("\n\r\t", 3, "\"\\n\\r\\t\"");
    check_escape("\x01\x1f\x7f", 3, "\"\\u0001\\u001f\\u007f\"");
    check_escape("\b\f", 2, "\"\\u0008\\u000c\"");
    check_escape("a\0b", 3, "\"a\\u0000b\"");
    check_escape("\xe2\x82\xac\xf0\x9f\x98\x80", 7, "\"\xe2\x82\xac\xf0\x9f\x98\x80\"");   /* valid: as is */
    check_escape("\xff", 1, "\"\\ufffd\"");
    check_escape("\xe2\x82", 2, "\"\\ufffd\\ufffd\"");   /* a cut character: one U+FFFD per byte */
    check_escape("\xed\xa0\x80", 3, "\"\\ufffd\\ufffd\\ufffd\"");   /* surrogate */
    check_escape("/", 1, "\"/\"");
}

/* Valid UTF-8 parts of random bytes survive; the rest becomes U+FFFD; cJSON parses it back. */
Test(json_escape, random_bytes_give_valid_json) {
    uint64_t s = 0x9e3779b97f4a7c15ull;
    unsigned char in[64];
    for (int trial = 0; trial < 2000; trial++) {
        size_t n = (size_t)(trial % 64);
        for (size_t i = 0; i < n; i++) {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            in[i] = (unsigned char)(trial % 3 == 0 ? 0x20 + s % 0x60 : s);   /* some mostly-ASCII trials */
        }
        strbuf_t b = {0}, want = {0};
        sb_json_str(&b, (const char *)in, n);
        sb_str(&want, "");
        for (size_t i = 0, k; i < n; i += k) {   /* the expected decoded string */
            k = utf8_valid_len(in + i, n - i);
            if (k == 0) {
                sb_str(&want, "\xef\xbf\xbd");
                k = 1;
            } else {
                sb_add(&want, in + i, k);
            }
        }
        cJSON *v = cJSON_Parse(b.p);
        cr_assert(cJSON_IsString(v), "trial %d: not a JSON string: %s", trial, b.p);
        if (!memchr(in, 0, n))   /* cJSON's strings end at an escaped NUL */
            cr_assert_str_eq(v->valuestring, want.p, "trial %d", trial);
        cJSON_Delete(v);
        sb_free(&b);
        sb_free(&want);
    }
}

/* ---- the clock ---- */

Test(clock, timespec_of_a_spex_now_time) {
    struct timespec ts = spex_timespec(12.25);
    cr_assert_eq(ts.tv_sec, 12);
    cr_assert_eq(ts.tv_nsec, 250000000L);
    ts = spex_timespec(3.0);
    cr_assert_eq(ts.tv_sec, 3);
    cr_assert_eq(ts.tv_nsec, 0);
    double a = spex_now(), b = spex_now();
    cr_assert_geq(b, a, "monotonic");
}

Test(clock, a_timed_wait_ends_at_its_deadline_on_the_same_clock) {
    pthread_cond_t cv;
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    cr_assert_eq(spex_cond_init(&cv), 0);
    double t0 = spex_now();
    struct timespec until = spex_timespec(t0 + 0.05);
    pthread_mutex_lock(&mu);
    int rc;
    while ((rc = pthread_cond_timedwait(&cv, &mu, &until)) == 0) {}
    pthread_mutex_unlock(&mu);
    double waited = spex_now() - t0;
    cr_assert_eq(rc, ETIMEDOUT);
    /* a condition on another clock than spex_now() would see a deadline long past, or far ahead */
    cr_assert_geq(waited, 0.045, "waited %.3f s", waited);
    cr_assert_lt(waited, 2.0, "waited %.3f s", waited);
    pthread_cond_destroy(&cv);
}
