/* cli_util.c - see cli_util.h. */
#include "cli_util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


int cli_parse_ids(const char *opt, const char *s, int32_t **ids, int *n) {
    int cap = 16, cnt = 0;
    int32_t *v = malloc(sizeof(int32_t) * cap);
    const char *p = s;
    while (v && *p) {
        char *end;
        errno = 0;
        long x = strtol(p, &end, 10);
        if (errno || end == p || x < 0 || x > INT32_MAX || (*end && *end != ',')) {
            fprintf(stderr, "spex: %s: expected comma-separated token ids, bad at '%s'\n", opt, p);
            free(v);
            return -1;
        }
        if (cnt == cap) {
            int32_t *nv = realloc(v, sizeof(int32_t) * (cap *= 2));
            if (!nv) break;
            v = nv;
        }
        v[cnt++] = (int32_t)x;
        p = *end ? end + 1 : end;
    }
    if (!v || cnt == 0) {
        fprintf(stderr, "spex: %s: no token ids given\n", opt);
        free(v);
        return -1;
    }
    *ids = v;
    *n = cnt;
    return 0;
}

void cli_print_floats(FILE *f, const float *x, int n) {
    fputc('[', f);
    for (int i = 0; i < n; i++) fprintf(f, i ? ",%.9g" : "%.9g", (double)x[i]);
    fputc(']', f);
}

void cli_print_ids(FILE *f, const int32_t *x, int n) {
    fputc('[', f);
    for (int i = 0; i < n; i++) fprintf(f, i ? ",%d" : "%d", (int)x[i]);
    fputc(']', f);
}

void cli_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "spex %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

void cli_progress(void *label, int done, int total) {
    static const char bar[] = "########################################";
    if (!isatty(2) || total <= 0) return;
    int width = 40, fill = (int)((long)width * done / total);
    fprintf(stderr, "\r%s [%.*s%*s] %3d%%", label ? (const char *)label : "", fill, bar, width - fill, "",
            (int)(100L * done / total));
    if (done >= total) fputs("\r\033[K", stderr);   /* clear the line when finished */
    fflush(stderr);
}
