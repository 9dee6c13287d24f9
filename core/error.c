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
    char prefix[SPEX_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    size_t plen = strlen(prefix), olen = strnlen(err->msg, sizeof err->msg - 1);
    if (plen > sizeof err->msg - 1) plen = sizeof err->msg - 1;
    if (plen + olen > sizeof err->msg - 1) olen = sizeof err->msg - 1 - plen;   /* keep the head */
    memmove(err->msg + plen, err->msg, olen);
    memcpy(err->msg, prefix, plen);
    err->msg[plen + olen] = '\0';
    return -1;
}

void spex_err_clear(spex_err_t *err) {
    if (err) err->msg[0] = '\0';
}
