/* cli_json.h - the JSON the subcommands print whole (not token by token) is
 * built as a cJSON tree; these print it and add the pieces cJSON lacks. */
#ifndef SPEX_CLI_JSON_H
#define SPEX_CLI_JSON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cjson/cJSON.h>

/* Print `o` compactly and a newline, then free it; -1 when out of memory
 * (o may be NULL: a failed construction). */
int cli_json_print(cJSON *o, FILE *f);
/* The same into a buffer (whole lines for one write()); NULL when out of memory. */
char *cli_json_line(cJSON *o, size_t *len);

/* Add `len` bytes of `text` as a string whose invalid UTF-8 bytes become
 * U+FFFD (cJSON would copy them as they are, which is not JSON); NULL: null. */
void cli_json_add_text(cJSON *o, const char *key, const char *text, size_t len);
/* The same for a NUL-terminated string (or NULL). */
void cli_json_add_cstr(cJSON *o, const char *key, const char *s);

/* An array of numbers from int32 ids / longs. */
cJSON *cli_json_ids(const int32_t *v, int n);
cJSON *cli_json_longs(const long *v, int n);

#endif
