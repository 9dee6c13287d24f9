/* rope.c - see rope.h. Frequencies follow DeepSeek-V3's precompute_freqs_cis. */
#include "rope.h"

#include <math.h>
#include <stdlib.h>

static double yarn_mscale(double scale, double mscale) {
    return scale <= 1.0 ? 1.0 : 0.1 * mscale * log(scale) + 1.0;
}

/* Dimension index at which `num_rotations` full turns fit in max_pos (YaRN). */
static double correction_dim(double num_rotations, int dim, double base, int max_pos) {
    return dim * log(max_pos / (num_rotations * 2.0 * M_PI)) / (2.0 * log(base));
}

/* inv_freq[dim/2], blended for YaRN. */
static void rope_freqs(const spex_config_t *cfg, int dim, double *inv_freq) {
    const spex_rope_scaling_t *y = &cfg->rope_scaling;
    for (int i = 0; i < dim / 2; i++) inv_freq[i] = 1.0 / pow(cfg->rope_theta, (2.0 * i) / dim);
    if (!y->yarn) return;
    double lo = floor(correction_dim(y->beta_fast, dim, cfg->rope_theta, y->original_max_position_embeddings));
    double hi = ceil(correction_dim(y->beta_slow, dim, cfg->rope_theta, y->original_max_position_embeddings));
    if (lo < 0) lo = 0;
    if (hi > dim - 1) hi = dim - 1;
    if (lo == hi) hi += 0.001;
    for (int i = 0; i < dim / 2; i++) {
        double ramp = (i - lo) / (hi - lo);
        ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
        double smooth = 1.0 - ramp;   /* 1 = keep original frequency (high-frequency dims) */
        inv_freq[i] = inv_freq[i] / y->factor * (1.0 - smooth) + inv_freq[i] * smooth;
    }
}

int rope_init(rope_t *r, const spex_config_t *cfg, int max_pos, spex_err_t *err) {
    int dim = cfg->qk_rope_head_dim, half = dim / 2;
    if (dim <= 0 || dim % 2) return spex_fail(err, "rope: qk_rope_head_dim must be even and > 0, got %d", dim);
    r->dim = dim;
    r->max_pos = max_pos;
    r->cos = malloc(sizeof(float) * (size_t)max_pos * half);
    r->sin = malloc(sizeof(float) * (size_t)max_pos * half);
    double *inv_freq = malloc(sizeof(double) * half);
    if (!r->cos || !r->sin || !inv_freq) {
        free(inv_freq);
        rope_free(r);
        return spex_fail(err, "rope: out of memory for a table of %d positions (config max_position_embeddings)", max_pos);
    }
    rope_freqs(cfg, dim, inv_freq);
    double ms = 1.0;
    if (cfg->rope_scaling.yarn)
        ms = yarn_mscale(cfg->rope_scaling.factor, cfg->rope_scaling.mscale) /
             yarn_mscale(cfg->rope_scaling.factor, cfg->rope_scaling.mscale_all_dim);
    for (int p = 0; p < max_pos; p++)
        for (int i = 0; i < half; i++) {
            /* DeepSeek computes pos * freq in float32; do the same for the angle */
            float angle = (float)p * (float)inv_freq[i];
            r->cos[(size_t)p * half + i] = (float)(cos((double)angle) * ms);
            r->sin[(size_t)p * half + i] = (float)(sin((double)angle) * ms);
        }
    free(inv_freq);
    return 0;
}

void rope_free(rope_t *r) {
    if (!r) return;
    free(r->cos);
    free(r->sin);
    r->cos = r->sin = NULL;
}

void rope_apply(const rope_t *r, float *x, int pos) {
    int half = r->dim / 2;
    const float *c = r->cos + (size_t)pos * half, *s = r->sin + (size_t)pos * half;
    for (int i = 0; i < half; i++) {
        float a = x[2 * i], b = x[2 * i + 1];
        x[2 * i] = a * c[i] - b * s[i];
        x[2 * i + 1] = a * s[i] + b * c[i];
    }
}

double rope_softmax_mscale(const spex_config_t *cfg) {
    if (!cfg->rope_scaling.yarn) return 1.0;
    double m = yarn_mscale(cfg->rope_scaling.factor, cfg->rope_scaling.mscale_all_dim);
    return m * m;
}
