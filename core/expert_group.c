/* expert_group.c - see expert_group.h. Gather the rows of each expert, run the
 * expert once over all of them, scatter back gate-weighted. */
#include "expert_group.h"

#include <stdlib.h>
#include <string.h>

#include "core/kernels.h"

/* o = a * y, rounded exactly as axpy() rounds its product. */
static void scale_copy(float *o, float a, const float *y, int n) {
    for (int i = 0; i < n; i++) o[i] = a * y[i];
}

static int group_run(expert_t *const *experts, int n_experts, const float *x, int n, int hidden, int k,
                     const int32_t *idx, const float *w, float *out, bool each, expert_group_stats_t *stats,
                     spex_err_t *err) {
    int max_inter = 0;
    for (int e = 0; e < n_experts; e++)
        if (experts[e] && experts[e]->gate.out > max_inter) max_inter = experts[e]->gate.out;
    /* Sized n * k, not n: a row that names an expert twice (malformed input
     * from the wire) then costs an extra pass instead of an overflow. */
    size_t cap = (size_t)n * (k > 0 ? k : 1);
    int *rows = malloc(sizeof(int) * cap);                /* rows routed to the current expert */
    float *wts = malloc(sizeof(float) * cap);
    float *xin = malloc(sizeof(float) * cap * hidden);
    float *yout = malloc(sizeof(float) * cap * hidden);
    float *scratch = malloc(sizeof(float) * 2 * cap * (max_inter > 0 ? max_inter : 1));
    int rc = 0;
    if (!rows || !wts || !xin || !yout || !scratch) {
        rc = spex_fail(err, "experts: out of memory for %d rows", n);
        goto done;
    }
    for (int e = 0; e < n_experts; e++) {
        if (!experts[e]) continue;
        int m = 0;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < k; j++)
                if (idx[(size_t)i * k + j] == e) {
                    rows[m] = each ? i * k + j : i;
                    wts[m] = w[(size_t)i * k + j];
                    memcpy(xin + (size_t)m * hidden, x + (size_t)i * hidden, sizeof(float) * hidden);
                    m++;
                }
        if (m == 0) continue;
        if (stats && stats->tokens_per_expert) stats->tokens_per_expert[e] += m;
        expert_forward_rows(experts[e], xin, yout, m, scratch);
        for (int r = 0; r < m; r++) {
            float *o = out + (size_t)rows[r] * hidden;
            if (each) scale_copy(o, wts[r], yout + (size_t)r * hidden, hidden);
            else axpy(o, wts[r], yout + (size_t)r * hidden, hidden);
        }
    }
done:
    free(rows);
    free(wts);
    free(xin);
    free(yout);
    free(scratch);
    return rc;
}

int expert_group_apply(expert_t *const *experts, int n_experts, const float *x, int n, int hidden, int k,
                       const int32_t *idx, const float *w, float *out, expert_group_stats_t *stats,
                       spex_err_t *err) {
    return group_run(experts, n_experts, x, n, hidden, k, idx, w, out, false, stats, err);
}

int expert_group_apply_each(expert_t *const *experts, int n_experts, const float *x, int n, int hidden, int k,
                            const int32_t *idx, const float *w, float *each, expert_group_stats_t *stats,
                            spex_err_t *err) {
    return group_run(experts, n_experts, x, n, hidden, k, idx, w, each, true, stats, err);
}
