/* log.h - diagnostics to stderr, prefixed with the process role, e.g.
 * "spex[rank 2]: ...". Library code uses this only for progress and warnings;
 * errors travel as spex_err_t values. */
#ifndef SPEX_LOG_H
#define SPEX_LOG_H

void spex_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
