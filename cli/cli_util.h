/* cli_util.h - small helpers shared by the subcommands: option parsing,
 * id lists, printing float rows as JSON, reporting errors. */
#ifndef SPEX_CLI_UTIL_H
#define SPEX_CLI_UTIL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* If argv[*i] is `name`, store the next argument in *value, advance *i and return 1;
 * a missing value prints an error and returns -1; otherwise 0. */
int cli_opt(int argc, char **argv, int *i, const char *name, const char **value);

/* Parse a decimal int / double / comma-separated id list; print an error naming
 * the option and return -1 on bad input. *ids is malloc'ed. */
int cli_parse_int(const char *opt, const char *s, long min, long max, long *out);
int cli_parse_double(const char *opt, const char *s, double min, double max, double *out);
int cli_parse_ids(const char *opt, const char *s, int32_t **ids, int *n);

/* Print `[a,b,...]` with %.9g (round-trips float). */
void cli_print_floats(FILE *f, const float *x, int n);
void cli_print_ids(FILE *f, const int32_t *x, int n);

/* Print a JSON string literal (escaped by sb_json_str: invalid UTF-8 bytes become
 * U+FFFD); -1 when out of memory (then "" is printed). */
int cli_print_json_string(FILE *f, const char *s);

/* A progress bar on stderr when it is a terminal (for model_options_t.progress):
 * pass the label as user data. */
void cli_progress(void *label, int done, int total);

/* "spex <cmd>: <msg>" on stderr. */
void cli_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
