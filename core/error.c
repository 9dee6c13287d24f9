/* error.c - see error.h: formatting of error messages carried as values. */
#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int spex_fail(spex_err_t *err, const char *fmt, ...) {
    if (!err) return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return -1;
}

int spex_err_prefix(spex_err_t *err, const char *fmt, ...) {
    if (!err) return -1;
    char prefix[SPEX_ERR_MSG_MAX], old[SPEX_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    snprintf(err->msg, sizeof err->msg, "%s%s", prefix, old);
    return -1;
}

void spex_err_clear(spex_err_t *err) {
    if (err) err->msg[0] = '\0';
}
