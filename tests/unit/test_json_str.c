/* test_json_str.c - JSON strings with their length (server/json_str.h, issue 16
 * items 4 and 7): the unescaper on every escape, NUL and surrogates; malformed
 * tokens; string lengths recorded on a parsed tree (members, nested arrays,
 * duplicate keys); trailing characters refused; member names with NUL refused. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/json_str.h"

/* Decode token tok (a C string literal, so no NUL in it) and compare with want[0..want_len). */
static void expect_decode(const char *tok, const char *want, size_t want_len) {
    char out[256];
    size_t len = 99;
    size_t used = json_str_decode(tok, strlen(tok), out, &len);
    cr_assert_eq(used, strlen(tok), "%s: used %zu of %zu", tok, used, strlen(tok));
    cr_assert_eq(len, want_len, "%s: length %zu, want %zu", tok, len, want_len);
    cr_assert(!memcmp(out, want, want_len), "%s: bytes differ", tok);
    size_t len2;
    cr_assert_eq(json_str_decode(tok, strlen(tok), NULL, &len2), used, "measuring only");
    cr_assert_eq(len2, len);
}

Test(json_str, decodes_escapes_nul_and_surrogates) {
    expect_decode("\"\"", "", 0);
    expect_decode("\"hello\"", "hello", 5);
    expect_decode("\"hello\\u0000 world\"", "hello\0 world", 12);
    expect_decode("\"\\u0000\\u0000\"", "\0\0", 2);
    expect_decode("\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "\"\\/\b\f\n\r\t", 8);
    expect_decode("\"\\u00e9\\u4e2D\"", "\xc3\xa9\xe4\xb8\xad", 5);
    expect_decode("\"\\ud83d\\ude00\"", "\xf0\x9f\x98\x80", 4);
    expect_decode("\"\xc3\xa9\x01\"", "\xc3\xa9\x01", 3);   /* raw bytes kept, as cJSON does */
    /* the token ends at its closing quote, whatever follows */
    size_t len;
    cr_assert_eq(json_str_decode("\"ab\" , 1", 8, NULL, &len), 4);
    cr_assert_eq(len, 2);
    /* a raw NUL byte inside the token is a byte like any other */
    cr_assert_eq(json_str_decode("\"a\0b\"", 5, NULL, &len), 5);
    cr_assert_eq(len, 3);
}

Test(json_str, malformed_tokens) {
    const char *bad[] = {"", "x", "\"abc", "\"\\", "\"\\x\"", "\"\\u12\"", "\"\\u12g4\"", "\"\\udc00\"",
                         "\"\\ud800\"", "\"\\ud800\\u0041\"", "\"\\ud800x\""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t len;
        cr_assert_eq(json_str_decode(bad[i], strlen(bad[i]), NULL, &len), 0, "'%s' accepted", bad[i]);
    }
}

static cJSON *parse(const char *text, const char **why) {
    size_t at;
    *why = NULL;
    return json_parse_doc(text, strlen(text), why, &at);
}

Test(json_str, tree_strings_carry_their_length) {
    const char *why;
    cJSON *r = parse(" {\"a\": \"x\\u0000y\", \"n\": [1, -2.5e3, true, null, {\"s\": \"\\u0000\"}],"
                     " \"a\": \"\", \"m\": [[\"p\\u0000\", \"q\"]]} \n", &why);
    cr_assert_not_null(r, "%s", why);
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(r, "a");
    cr_assert_eq(json_str_len(a), 3);
    cr_assert(!memcmp(a->valuestring, "x\0y", 3));
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(r, "n"), 4), "s");
    cr_assert_eq(json_str_len(s), 1);
    cr_assert_eq(json_str_len(a->next->next), 0, "the duplicate \"a\" is empty");
    const cJSON *m = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(r, "m"), 0);
    cr_assert_eq(json_str_len(cJSON_GetArrayItem(m, 0)), 2);
    cr_assert_eq(json_str_len(cJSON_GetArrayItem(m, 1)), 1);
    cr_assert(json_str_is(cJSON_GetArrayItem(m, 1), "q"));
    cr_assert(!json_str_is(cJSON_GetArrayItem(m, 0), "p"), "\"p\\u0000\" is not \"p\"");
    cJSON_Delete(r);
    /* a bare string, and a tree parsed by cJSON alone (strlen fallback) */
    r = parse("\"\\u0000\"", &why);
    cr_assert_eq(json_str_len(r), 1);
    cJSON_Delete(r);
    r = cJSON_Parse("\"abc\"");
    cr_assert_eq(json_str_len(r), 3);
    cJSON_Delete(r);
}

Test(json_str, refuses_trailing_characters_and_nul_names) {
    const char *why;
    cr_assert_null(parse("{\"a\": 1} x", &why));
    cr_assert(strstr(why, "characters follow"), "%s", why);
    cr_assert_null(parse("{}{}", &why));
    cr_assert_null(parse("[1] ]", &why));
    cr_assert_null(parse("{\"a\": 1", &why));
    cr_assert(strstr(why, "not valid JSON"), "%s", why);
    cr_assert_null(parse("{\"id\\u0000x\": 1}", &why));
    cr_assert(strstr(why, "member name"), "%s", why);
    cJSON *r = parse("{\"a\": 1} \t\r\n", &why);
    cr_assert_not_null(r, "%s", why);
    cJSON_Delete(r);
}

/* Batch ids are keyed by this spelling: cJSON's for NUL-free strings (so
 * outputs written before still resume), every byte kept, NUL as \u0000, and
 * invalid UTF-8 left distinct (sb_json_str would make both U+FFFD). */
Test(json_str, spells_ids_like_cjson_through_nul) {
    const char *samples[] = {"plain", "q\"b\\s/", "\b\f\n\r\t\x01\x1f", "\xc3\xa9 \xe4\xb8\xad", "\xff", "\xfe", ""};
    for (size_t i = 0; i < sizeof samples / sizeof samples[0]; i++) {
        cJSON *str = cJSON_CreateString(samples[i]);
        char *want = cJSON_PrintUnformatted(str);
        strbuf_t b = {0};
        json_str_spell(&b, samples[i], strlen(samples[i]));
        char *got = sb_take(&b, NULL);
        cr_assert_str_eq(got, want);
        free(got);
        cJSON_free(want);
        cJSON_Delete(str);
    }
    strbuf_t b = {0};
    json_str_spell(&b, "nul\0id", 6);
    char *got = sb_take(&b, NULL);
    cr_assert_str_eq(got, "\"nul\\u0000id\"");
    free(got);
}

static uint64_t next_rand(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Random strings (NUL, control bytes, quotes, backslashes, UTF-8, bytes
 * above 0x7f) spelled, nested in arrays and objects, parsed back: every
 * string's bytes and length come back exactly, under cJSON and the walk. */
Test(json_str, random_strings_round_trip) {
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    static const char alphabet[] = {'\0', '\x01', '\x1f', '"', '\\', '/', 'a', ' ', '\n', '\t', '\x7f', 'z'};
    for (int round = 0; round < 500; round++) {
        char strs[4][40];
        size_t lens[4];
        strbuf_t b = {0};
        sb_str(&b, "{\"k\": [");
        for (int i = 0; i < 4; i++) {
            lens[i] = next_rand(&seed) % 40;
            for (size_t j = 0; j < lens[i]; j++) {
                uint64_t r = next_rand(&seed);
                strs[i][j] = r % 3 ? alphabet[r % sizeof alphabet] : (char)(0xc3 * (j % 2 == 0));
            }
            /* keep high bytes as valid UTF-8 pairs: c3 followed by a9 */
            for (size_t j = 0; j < lens[i]; j++)
                if ((unsigned char)strs[i][j] == 0xc3) {
                    if (j + 1 < lens[i]) strs[i][++j] = (char)0xa9;
                    else strs[i][j] = 'x';
                }
            if (i) sb_str(&b, i == 2 ? ", {\"s\": " : ", ");
            json_str_spell(&b, strs[i], lens[i]);
            if (i == 2) sb_str(&b, "}");
        }
        sb_str(&b, "], \"n\": -1.5e2 }  ");
        size_t len;
        char *text = sb_take(&b, &len);
        const char *why = NULL;
        size_t at;
        cJSON *r = json_parse_doc(text, len, &why, &at);
        cr_assert_not_null(r, "round %d: %s at %zu: %s", round, why, at, text);
        const cJSON *k = cJSON_GetObjectItemCaseSensitive(r, "k");
        const cJSON *got[4] = {cJSON_GetArrayItem(k, 0), cJSON_GetArrayItem(k, 1),
                               cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(k, 2), "s"), cJSON_GetArrayItem(k, 3)};
        for (int i = 0; i < 4; i++) {
            cr_assert_eq(json_str_len(got[i]), lens[i], "round %d string %d: %zu bytes, want %zu", round, i,
                         json_str_len(got[i]), lens[i]);
            cr_assert(!memcmp(got[i]->valuestring, strs[i], lens[i]), "round %d string %d differs", round, i);
        }
        cJSON_Delete(r);
        free(text);
    }
}
