/* kernels.c - see kernels.h. Reductions accumulate in float in index order so
 * that every caller (prefill, decode, every rank) gets the same bits for the
 * same row. */
#include "kernels.h"

#include <math.h>

void rmsnorm(float *y, const float *x, const float *w, int n, int d, float eps) {
    for (int i = 0; i < n; i++) {
        const float *xr = x + (size_t)i * d;
        float *yr = y + (size_t)i * d;
        float ss = 0.0f;
        for (int j = 0; j < d; j++) ss += xr[j] * xr[j];
        float inv = 1.0f / sqrtf(ss / (float)d + eps);
        for (int j = 0; j < d; j++) yr[j] = xr[j] * inv * w[j];
    }
}

void swiglu_inplace(float *x, const float *gate, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float g = gate[i];
        x[i] *= g / (1.0f + expf(-g));
    }
}

void softmax_row(float *x, int n) {
    float mx = -INFINITY;
    for (int i = 0; i < n; i++) if (x[i] > mx) mx = x[i];
    if (mx == -INFINITY) {           /* fully masked row: defined as all zeros */
        for (int i = 0; i < n; i++) x[i] = 0.0f;
        return;
    }
    float sum = 0.0f;
    for (int i = 0; i < n; i++) { x[i] = expf(x[i] - mx); sum += x[i]; }
    float inv = 1.0f / sum;
    for (int i = 0; i < n; i++) x[i] *= inv;
}

int argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++) if (x[i] > x[best]) best = i;
    return best;
}
