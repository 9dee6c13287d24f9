/* cli_json.c - see cli_json.h. */
#include "cli_json.h"

#include <stdlib.h>

#include "cli/cli_util.h"

int cli_json_print(cJSON *o, FILE *f) {
    char *text = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (!text) return -1;
    fprintf(f, "%s\n", text);
    free(text);
    return 0;
}

void cli_json_add_text(cJSON *o, const char *key, const char *text) {
    char *lit = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&lit, &len);
    if (f) {
        cli_print_json_string(f, text);
        fclose(f);
    }
    cJSON_AddRawToObject(o, key, lit ? lit : "\"\"");
    free(lit);
}

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
