/* json_raw.h - the text of a top-level member of a JSON object exactly as
 * written. cJSON keeps numbers as doubles, so an id such as
 * 1234567890123456789 came back as 1.2345678901234568e+18 and collided with
 * ...788 (issue 16 item 5); `spex batch` keys and echoes ids by this text. */
#ifndef SPEX_JSON_RAW_H
#define SPEX_JSON_RAW_H

#include <stddef.h>

/* Malloc'ed copy of the raw text of member `key` of the JSON object in
 * text[0..len) (the first one with that exact key spelling), or NULL when it
 * is absent, the key is written with escapes, or the text is not an object.
 * The text is assumed valid JSON (parse it first). */
char *json_raw_member(const char *text, size_t len, const char *key);

/* The key `spex batch` gives member `field` (value v, parsed from line[0..len)
 * by json_parse_doc): a number as written in the line, a string in cJSON's
 * canonical spelling of all its bytes (so "a" and "\u0061" are one id, and
 * "nul\u0000id" is not "nul": issue 16 item 4). Malloc'ed; NULL when out of
 * memory. */
struct cJSON;
char *json_raw_key(const struct cJSON *v, const char *line, size_t len, const char *field);

#endif
