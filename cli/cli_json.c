/* cli_json.c - see cli_json.h. */
#include "cli_json.h"

#include <stdlib.h>
#include <string.h>

#include "core/strbuf.h"

char *cli_json_line(cJSON *o, size_t *len) {
    char *text = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    size_t n = text ? strlen(text) : 0;
    char *line = text ? realloc(text, n + 2) : NULL;
    if (!line) { free(text); return NULL; }
    memcpy(line + n, "\n", 2);
    *len = n + 1;
    return line;
}

int cli_json_print(cJSON *o, FILE *f) {
    size_t len;
    char *line = cli_json_line(o, &len);
    if (!line) return -1;
    fwrite(line, 1, len, f);
    free(line);
    return 0;
}

void cli_json_add_text(cJSON *o, const char *key, const char *text, size_t len) {
    if (!text) { cJSON_AddNullToObject(o, key); return; }
    strbuf_t b = {0};
    sb_json_str(&b, text, len);
    cJSON_AddRawToObject(o, key, b.oom ? NULL : b.p);   /* a raw item without text fails the print: no silent gap */
    sb_free(&b);
}

void cli_json_add_cstr(cJSON *o, const char *key, const char *s) { cli_json_add_text(o, key, s, s ? strlen(s) : 0); }

cJSON *cli_json_ids(const int32_t *v, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; a && i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(v[i]));
    return a;
}

cJSON *cli_json_longs(const long *v, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; a && i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber((double)v[i]));
    return a;
}
