/* bench_serve_report.h - the rows of `spex bench serve` and their output: a
 * markdown table on stdout and, with --csv, one CSV line per row. Single-turn
 * rows (--turns 1) report requests/s, tokens/s, TTFT and ITL; multi-turn rows
 * report conversations, TTFT of turn 1 and of turn T and their ratio, ITL,
 * tokens/s and the server's prefix cache hit rate over the row. With several
 * rounds (--rounds R, single-turn only) a row's tokens/s is the median of its
 * rounds' with their range; the other columns pool every round. */
#ifndef SPEX_CLI_BENCH_SERVE_REPORT_H
#define SPEX_CLI_BENCH_SERVE_REPORT_H

#include <stdbool.h>

#include "cli/bench_metrics.h"
#include "cli/bench_stats.h"

enum { BS_MAX_ROUNDS = 64 };

typedef struct bs_row {
    long spec, conc, requests, errors;   /* requests: conversations when turns > 1; over every round */
    long per_round;                      /* requests of one round */
    long tokens;
    double seconds;                      /* over every round */
    int rounds;                          /* rounds run (--rounds) */
    double tps[BS_MAX_ROUNDS];           /* tokens/s of each round */
    samples_t ttft, itl;                 /* ttft: of turn 1 when turns > 1 */
    samples_t ttft_last;                 /* turns > 1: of turn T */
    bool prefix_known;                   /* /metrics was read before and after */
    prefix_counts_t prefix;              /* the row's delta */
} bs_row_t;

typedef struct bs_report {
    const char *host, *label;
    int port, turns;
    long max_tokens;
    double temperature;
} bs_report_t;

void bs_print_table(const bs_report_t *o, const bs_row_t *rows, int n);
/* 0, or -1 when the file cannot be written. */
int bs_write_csv(const bs_report_t *o, const char *path, const bs_row_t *rows, int n);

#endif
