/* cli_util.h - small helpers shared by the subcommands: token id lists,
 * printing float rows as JSON, reporting errors. */
#ifndef SPEX_CLI_UTIL_H
#define SPEX_CLI_UTIL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* Parse a comma-separated id list (any length); print an error naming the
 * option and return -1 on bad input. *ids is malloc'ed. Options: cli_opts.h. */
int cli_parse_ids(const char *opt, const char *s, int32_t **ids, int *n);

/* Print `[a,b,...]` with %.9g (round-trips float). */
void cli_print_floats(FILE *f, const float *x, int n);
void cli_print_ids(FILE *f, const int32_t *x, int n);

/* A progress bar on stderr when it is a terminal (for model_options_t.progress):
 * pass the label as user data. */
void cli_progress(void *label, int done, int total);

/* "spex <cmd>: <msg>" on stderr. */
void cli_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
