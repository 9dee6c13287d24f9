/* error.h - errors as values.
 *
 * Every fallible function in Spex returns int (0 = ok, -1 = failed) and takes a
 * `spex_err_t *err` that it fills with a human-readable message naming the file,
 * tensor, field or rank at fault. Callers add context on the way up with
 * spex_err_prefix(), so the final message reads like a path:
 *   "model dir 'm/': model.safetensors: tensor 'lm_head.weight': data past end of file".
 * No library code prints or exits; only cli/ turns an error into stderr + exit code. */
#ifndef SPEX_ERROR_H
#define SPEX_ERROR_H

#include <stddef.h>

#define SPEX_ERR_MSG_MAX 1024

typedef struct spex_err {
    char msg[SPEX_ERR_MSG_MAX];
} spex_err_t;

/* Set the message (printf-style). Returns -1 so callers can `return spex_fail(...)`. */
int spex_fail(spex_err_t *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prepend context to an existing message. Returns -1. */
int spex_err_prefix(spex_err_t *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Clear the message. */
void spex_err_clear(spex_err_t *err);

#endif
