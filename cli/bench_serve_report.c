/* bench_serve_report.c - see bench_serve_report.h. */
#include "cli/bench_serve_report.h"

#include <stdio.h>
#include <stdlib.h>

#define MS(s, p) (1e3 * percentile((s), (p)))

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Tokens/s of the row: one round's, or the median of its rounds' (lo, hi: their range). */
static double row_tps(const bs_row_t *r, double *lo, double *hi) {
    double v[BS_MAX_ROUNDS];
    int n = r->rounds < BS_MAX_ROUNDS ? r->rounds : BS_MAX_ROUNDS;
    if (n <= 1) {
        *lo = *hi = r->seconds > 0 ? (double)r->tokens / r->seconds : 0;
        return *lo;
    }
    for (int i = 0; i < n; i++) v[i] = r->tps[i];
    qsort(v, (size_t)n, sizeof v[0], cmp_double);
    *lo = v[0], *hi = v[n - 1];
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* p50 of turn T / p50 of turn 1; 0 when there is none. */
static double ttft_ratio(const bs_row_t *r) {
    double first = percentile(&r->ttft, 50);
    return first > 0 ? percentile(&r->ttft_last, 50) / first : 0;
}

/* The hit rate as a fraction, "off" (no prefix cache) or "?" (no /metrics). */
static void hit_rate_text(const bs_row_t *r, char *buf, size_t n) {
    if (!r->prefix_known) snprintf(buf, n, "?");
    else if (!r->prefix.on) snprintf(buf, n, "off");
    else snprintf(buf, n, "%.3f", prefix_hit_rate(&r->prefix));
}

static void print_single(const bs_row_t *r) {
    double ok = (double)(r->requests - r->errors), lo, hi, tps = row_tps(r, &lo, &hi);
    char tcell[64];
    if (r->rounds > 1) snprintf(tcell, sizeof tcell, "%.1f [%.1f-%.1f]", tps, lo, hi);
    else snprintf(tcell, sizeof tcell, "%.1f", tps);
    printf("| %ld | %ld | %ld | %ld | %.2f | %s | %.1f | %.1f | %.2f | %.2f |\n", r->spec, r->conc, r->requests,
           r->errors, ok / r->seconds, tcell, MS(&r->ttft, 50), MS(&r->ttft, 99), MS(&r->itl, 50), MS(&r->itl, 99));
}

static void print_turns(const bs_row_t *r) {
    char rate[32], hits[64] = "-";
    hit_rate_text(r, rate, sizeof rate);
    if (r->prefix_known && r->prefix.on) snprintf(hits, sizeof hits, "%.0f/%.0f", r->prefix.hits, r->prefix.lookups);
    printf("| %ld | %ld | %ld | %ld | %.1f | %.1f | %.1f | %.1f | %.1f | %.2f | %.2f | %.2f | %s | %s |\n", r->spec,
           r->conc, r->requests, r->errors, (double)r->tokens / r->seconds, MS(&r->ttft, 50), MS(&r->ttft, 99),
           MS(&r->ttft_last, 50), MS(&r->ttft_last, 99), ttft_ratio(r), MS(&r->itl, 50), MS(&r->itl, 99), rate, hits);
}

void bs_print_table(const bs_report_t *o, const bs_row_t *rows, int n) {
    printf("serve bench: %s:%d, %ld max tokens, temperature %g", o->host, o->port, o->max_tokens, o->temperature);
    if (o->turns > 1) printf(", %d-turn chats", o->turns);
    if (n > 0 && rows[0].rounds > 1)
        printf(", %d rounds of every row in turn (tokens/s: median [range] of the rounds)", rows[0].rounds);
    printf("%s%s\n", o->label ? ", " : "", o->label ? o->label : "");
    if (o->turns > 1)
        printf("| spec_k | clients | chats | errors | tokens/s | turn 1 TTFT p50 ms | turn 1 TTFT p99 ms | turn %d TTFT "
               "p50 ms | turn %d TTFT p99 ms | turn %d / turn 1 (p50) | ITL p50 ms | ITL p99 ms | prefix hit rate | "
               "hits/lookups |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
               o->turns, o->turns, o->turns);
    else
        printf("| spec_k | clients | requests | errors | req/s | tokens/s | TTFT p50 ms | TTFT p99 ms | ITL p50 ms | "
               "ITL p99 ms |\n|---|---|---|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < n; i++) {
        if (o->turns > 1) print_turns(&rows[i]);
        else print_single(&rows[i]);
    }
}

static void csv_single(FILE *f, const char *label, const bs_row_t *r) {
    double lo, hi, tps = row_tps(r, &lo, &hi);
    fprintf(f, "%s,%ld,%ld,%ld,%ld,%.3f,%.3f,%ld,%.2f,%.2f,%.2f,%.3f,%.3f,%d,%.2f,%.2f\n", label, r->spec, r->conc,
            r->requests, r->errors, r->seconds, (double)(r->requests - r->errors) / r->seconds, r->tokens, tps,
            MS(&r->ttft, 50), MS(&r->ttft, 99), MS(&r->itl, 50), MS(&r->itl, 99), r->rounds, lo, hi);
}

static void csv_turns(FILE *f, const char *label, int turns, const bs_row_t *r) {
    char rate[32], hits[32] = "off", lookups[32] = "off";
    hit_rate_text(r, rate, sizeof rate);
    if (r->prefix_known && r->prefix.on) {
        snprintf(hits, sizeof hits, "%.0f", r->prefix.hits);
        snprintf(lookups, sizeof lookups, "%.0f", r->prefix.lookups);
    }
    fprintf(f, "%s,%ld,%ld,%ld,%d,%ld,%.3f,%ld,%.2f,%.2f,%.2f,%.2f,%.2f,%.3f,%.3f,%.3f,%s,%s,%s\n", label, r->spec,
            r->conc, r->requests, turns, r->errors, r->seconds, r->tokens, (double)r->tokens / r->seconds,
            MS(&r->ttft, 50), MS(&r->ttft, 99), MS(&r->ttft_last, 50), MS(&r->ttft_last, 99), ttft_ratio(r),
            MS(&r->itl, 50), MS(&r->itl, 99), rate, hits, lookups);
}

int bs_write_csv(const bs_report_t *o, const char *path, const bs_row_t *rows, int n) {
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    if (o->turns > 1)
        fprintf(f, "label,spec_k,clients,chats,turns,errors,seconds,tokens,tokens_per_s,ttft1_p50_ms,ttft1_p99_ms,"
                   "ttft_last_p50_ms,ttft_last_p99_ms,ttft_last_over_first,itl_p50_ms,itl_p99_ms,prefix_hit_rate,"
                   "prefix_hits,prefix_lookups\n");
    else
        fprintf(f, "label,spec_k,clients,requests,errors,seconds,requests_per_s,tokens,tokens_per_s,ttft_p50_ms,"
                   "ttft_p99_ms,itl_p50_ms,itl_p99_ms,rounds,tokens_per_s_min,tokens_per_s_max\n");
    const char *label = o->label ? o->label : "";
    for (int i = 0; i < n; i++) {
        if (o->turns > 1) csv_turns(f, label, o->turns, &rows[i]);
        else csv_single(f, label, &rows[i]);
    }
    return fclose(f);
}
