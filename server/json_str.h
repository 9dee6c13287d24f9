/* json_str.h - JSON strings with their length. cJSON decodes "\u0000" (and a
 * raw NUL byte) into its NUL-terminated valuestring, so every reader that
 * used strlen cut "hello\u0000 world" to "hello" (issue 16 item 4). Here the
 * raw string tokens are decoded again, by a small unescaper that returns
 * (bytes, length), and each string node of the parsed tree gets its decoded
 * length, kept in the node's otherwise unused valueint.
 *
 * json_parse_doc is how `spex serve` and `spex batch` parse a body or a line:
 * cJSON, then nothing but whitespace may follow the value (trailing garbage
 * used to be ignored: issue 16 item 7), then the lengths. */
#ifndef SPEX_JSON_STR_H
#define SPEX_JSON_STR_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#include "core/strbuf.h"

/* Decode the JSON string token at s[0..n) (s[0] must be '"'). Writes the
 * decoded bytes to out when out is not NULL (at most n bytes: decoding never
 * grows the text) and their count to *out_len. Returns the token's length,
 * quotes included, or 0 when it is malformed (unterminated, bad escape, lone
 * surrogate). Raw bytes, control characters included, are kept as they are,
 * as cJSON does. */
size_t json_str_decode(const char *s, size_t n, char *out, size_t *out_len);

/* Parse text[0..len) as one JSON value with string lengths recorded. NULL on
 * failure with *why set ("not valid JSON", "not one JSON value: characters
 * follow it", "a member name holds a NUL character", ...) and *at the byte offset. */
cJSON *json_parse_doc(const char *text, size_t len, const char **why, size_t *at);

/* The decoded length of a string node of a tree from json_parse_doc. */
size_t json_str_len(const cJSON *s);

/* Append data[0..len) as a JSON string spelled as cJSON_Print spells it
 * (", \, \b \f \n \r \t escaped, other bytes below 0x20 as \u00xx, every other
 * byte as is: invalid UTF-8 stays distinct) but through NUL bytes: the
 * canonical text `spex batch` keys string ids by. */
void json_str_spell(strbuf_t *b, const char *data, size_t len);

/* s is a string node whose bytes equal the C string want. */
bool json_str_is(const cJSON *s, const char *want);

#endif
