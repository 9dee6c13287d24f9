/* test_metrics.c - the request series of coordinator/serve/metrics.h: the
 * model_name label (escaped) on request counters and histograms, the prefill /
 * decode time and per-request token histograms (cumulative buckets, _sum,
 * _count; observed only for requests that ran), and no label on engine series. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/serve/metrics.h"

static void expect_line(const char *text, const char *line) {
    char want[512];
    snprintf(want, sizeof want, "\n%s\n", line);
    cr_assert(strstr(text, want), "missing line: %s\n%s", line, text);
}

Test(metrics, model_name_and_request_histograms) {
    metrics_t *m = metrics_create();
    cr_assert_not_null(m);
    metrics_set_model_name(m, "dee\"p\\seek");
    metrics_request(m, "/v1/completions", 499);
    metrics_request_done(m, &(metrics_done_t){"stop", 12, 3, 0.01, 0.5, 0.2, 0.3});
    metrics_request_done(m, &(metrics_done_t){"length", 100, 40, 0.01, 2.0, 0.03, 1.9});
    metrics_request_done(m, &(metrics_done_t){"cancelled", 7, 0, 0.5, 0.5, 0, 0});   /* never ran */
    metrics_step(m, 0.01, 2);
    char *t = metrics_render(m, NULL);
    const char *ml = "model_name=\"dee\\\"p\\\\seek\"";
    char line[256];
    snprintf(line, sizeof line, "spex_http_requests_total{%s,endpoint=\"/v1/completions\",status=\"499\"} 1", ml);
    expect_line(t, line);
    snprintf(line, sizeof line, "spex_requests_finished_total{%s,finish_reason=\"cancelled\"} 1", ml);
    expect_line(t, line);
    snprintf(line, sizeof line, "spex_prompt_tokens_total{%s} 119", ml);
    expect_line(t, line);
    snprintf(line, sizeof line, "spex_request_prompt_tokens_bucket{%s,le=\"20\"} 1", ml);
    expect_line(t, line);
    snprintf(line, sizeof line, "spex_request_prompt_tokens_bucket{%s,le=\"+Inf\"} 2", ml);
    expect_line(t, line);
    snprintf(line, sizeof line, "spex_request_prompt_tokens_sum{%s} 112", ml);
    expect_line(t, line);
    snprintf(line, sizeof line, "spex_request_generation_tokens_count{%s} 2", ml);
    expect_line(t, line);
    snprintf(line, sizeof line, "spex_request_prefill_seconds_bucket{%s,le=\"0.05\"} 1", ml);
    expect_line(t, line);
    snprintf(line, sizeof line, "spex_request_decode_seconds_bucket{%s,le=\"2.5\"} 2", ml);
    expect_line(t, line);
    snprintf(line, sizeof line, "spex_request_duration_seconds_count{%s} 3", ml);
    expect_line(t, line);
    expect_line(t, "spex_engine_step_seconds_count 1");
    expect_line(t, "# TYPE spex_request_decode_seconds histogram");
    cr_assert_null(strstr(t, "spex_wire_bytes_total"), "no backend: no wire series");
    free(t);
    metrics_set_model_name(m, NULL);
    t = metrics_render(m, NULL);
    expect_line(t, "spex_prompt_tokens_total 119");
    free(t);
    metrics_free(m);
}
