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

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if invalid. */
static int utf8_valid_len(const unsigned char *s) {
    int n = s[0] < 0x80 ? 1 : (s[0] & 0xE0) == 0xC0 ? 2 : (s[0] & 0xF0) == 0xE0 ? 3 : (s[0] & 0xF8) == 0xF0 ? 4 : 0;
    if (n == 0 || (n == 2 && s[0] < 0xC2) || (n == 4 && s[0] > 0xF4)) return 0;
    for (int i = 1; i < n; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    if (n == 3 && ((s[0] == 0xE0 && s[1] < 0xA0) || (s[0] == 0xED && s[1] >= 0xA0))) return 0;
    if (n == 4 && ((s[0] == 0xF0 && s[1] < 0x90) || (s[0] == 0xF4 && s[1] >= 0x90))) return 0;
    return n;
}

void cli_print_json_string(FILE *f, const char *str) {
    const unsigned char *s = (const unsigned char *)str;
    fputc('"', f);
    while (*s) {
        int n = utf8_valid_len(s);
        if (n == 0) { fputs("\\ufffd", f); s++; continue; }
        if (n > 1) { fwrite(s, 1, (size_t)n, f); s += n; continue; }
        unsigned char c = *s++;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c == '\n') fputs("\\n", f);
        else if (c == '\r') fputs("\\r", f);
        else if (c == '\t') fputs("\\t", f);
        else if (c < 0x20 || c == 0x7f) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
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
