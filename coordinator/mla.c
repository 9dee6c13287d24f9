/* mla.c - see mla.h. Shapes in comments: m = rows of one sequence, T = cached
 * tokens after appending them, H heads. */
#include "mla.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/gemm_rows.h"
#include "core/kernels.h"

int mla_load(mla_t *a, const spex_config_t *cfg, const tensor_store_t *ts, const char *prefix, spex_err_t *err) {
    char n[512];
    memset(a, 0, sizeof *a);
    int H = cfg->num_attention_heads, hid = cfg->hidden_size, qk = config_qk_head_dim(cfg);
    a->n_heads = H;
    a->nope = cfg->qk_nope_head_dim;
    a->rope = cfg->qk_rope_head_dim;
    a->v_dim = cfg->v_head_dim;
    a->kv_lora = cfg->kv_lora_rank;
    a->q_lora = cfg->q_lora_rank;
    a->eps = (float)cfg->rms_norm_eps;
    a->softmax_scale = (float)(1.0 / sqrt((double)qk) * rope_softmax_mscale(cfg));
#define LOAD_LIN(field, suffix, o, i)                                        \
    do {                                                                     \
        snprintf(n, sizeof n, "%s.self_attn.%s", prefix, suffix);            \
        if (linear_load(&a->field, ts, n, (o), (i), err)) return -1;         \
    } while (0)
#define LOAD_VEC(field, suffix, d)                                           \
    do {                                                                     \
        snprintf(n, sizeof n, "%s.self_attn.%s", prefix, suffix);            \
        if (!(a->field = vector_load(ts, n, (d), err))) return -1;           \
    } while (0)
    if (a->q_lora > 0) {
        LOAD_LIN(q_a, "q_a_proj.weight", a->q_lora, hid);
        LOAD_VEC(q_a_norm, "q_a_layernorm.weight", a->q_lora);
        LOAD_LIN(q_b, "q_b_proj.weight", H * qk, a->q_lora);
    } else {
        LOAD_LIN(q_proj, "q_proj.weight", H * qk, hid);
    }
    LOAD_LIN(kv_a, "kv_a_proj_with_mqa.weight", a->kv_lora + a->rope, hid);
    LOAD_VEC(kv_norm, "kv_a_layernorm.weight", a->kv_lora);
    LOAD_LIN(kv_b, "kv_b_proj.weight", H * (a->nope + a->v_dim), a->kv_lora);
    LOAD_LIN(o_proj, "o_proj.weight", hid, H * a->v_dim);
#undef LOAD_LIN
#undef LOAD_VEC
    return 0;
}

void mla_free(mla_t *a) {
    if (!a) return;
    linear_free(&a->q_a);
    linear_free(&a->q_b);
    linear_free(&a->q_proj);
    linear_free(&a->kv_a);
    linear_free(&a->kv_b);
    linear_free(&a->o_proj);
    free(a->q_a_norm);
    free(a->kv_norm);
    a->q_a_norm = a->kv_norm = NULL;
}

/* q[n, H*(nope+rope)] from x[n, hidden]. scratch: n * q_lora floats. */
static void mla_query(const mla_t *a, const float *x, float *q, int n, float *scratch, bool exact) {
    if (a->q_lora > 0) {
        linear_apply(&a->q_a, x, scratch, n, exact);
        rmsnorm(scratch, scratch, a->q_a_norm, n, a->q_lora, a->eps);
        linear_apply(&a->q_b, scratch, q, n, exact);
    } else {
        linear_apply(&a->q_proj, x, q, n, exact);
    }
}

/* Write rows [c_kv normed | k_pe roped] of one sequence into its cache at positions p0.. */
static void mla_append(const mla_t *a, const rope_t *rope, kv_cache_t *kv, int layer, const float *kva, int m) {
    int p0 = kv->len[layer], w = a->kv_lora + a->rope;
    for (int i = 0; i < m; i++) {
        float *lat = kv->latent[layer] + (size_t)(p0 + i) * a->kv_lora;
        float *pe = kv->pe[layer] + (size_t)(p0 + i) * a->rope;
        rmsnorm(lat, kva + (size_t)i * w, a->kv_norm, 1, a->kv_lora, a->eps);
        memcpy(pe, kva + (size_t)i * w + a->kv_lora, sizeof(float) * a->rope);
        rope_apply(rope, pe, p0 + i);
    }
    kv->len[layer] = p0 + m;
}

/* Attention of one head for one sequence's m rows over T cached tokens.
 * q: rows of stride ldq, head h at offset h*(nope+rope); out: [m, v] at stride ldo.
 * work: m*kv_lora (q_abs) + m*T (scores) + m*kv_lora (latent output) floats. */
static void mla_head(const mla_t *a, const kv_cache_t *kv, int layer, int h, const float *q, int ldq, int m,
                     float *out, int ldo, float *work) {
    int T = kv->len[layer], p0 = T - m, L = a->kv_lora, qk = a->nope + a->rope;
    const float *lat = kv->latent[layer], *pe = kv->pe[layer];
    const float *w_uk = a->kv_b.w + (size_t)h * (a->nope + a->v_dim) * L;   /* [nope, L] */
    const float *w_uv = w_uk + (size_t)a->nope * L;                         /* [v, L] */
    float *q_abs = work, *scores = work + (size_t)m * L, *o_lat = scores + (size_t)m * T;
    /* q_abs[m, L] = q_nope[m, nope] W_uk[nope, L] */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, L, a->nope, 1.0f, q + h * qk, ldq, w_uk, L, 0.0f,
                q_abs, L);
    /* scores[m, T] = q_abs c_kv^T + q_pe k_pe^T */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, T, L, 1.0f, q_abs, L, lat, L, 0.0f, scores, T);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, T, a->rope, 1.0f, q + h * qk + a->nope, ldq, pe,
                a->rope, 1.0f, scores, T);
    for (int i = 0; i < m; i++) {
        float *row = scores + (size_t)i * T;
        int visible = p0 + i + 1;                 /* causal: positions <= own */
        for (int t = 0; t < visible; t++) row[t] *= a->softmax_scale;
        for (int t = visible; t < T; t++) row[t] = -INFINITY;
        softmax_row(row, T);
    }
    /* o_lat[m, L] = P[m, T] c_kv[T, L];  out[m, v] = o_lat W_uv^T */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, L, T, 1.0f, scores, T, lat, L, 0.0f, o_lat, L);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, a->v_dim, L, 1.0f, o_lat, L, w_uv, L, 0.0f, out, ldo);
}

/* The same attention as mla_head, row by row with fixed-order loops: row i's
 * output depends only on q row i and the cache (no BLAS blocking by row count).
 * work: kv_lora (q_abs) + T (scores) + kv_lora (latent output) floats. */
static void mla_head_exact(const mla_t *a, const kv_cache_t *kv, int layer, int h, const float *q, int ldq, int m,
                           float *out, int ldo, float *work) {
    int T = kv->len[layer], p0 = T - m, L = a->kv_lora, qk = a->nope + a->rope;
    const float *lat = kv->latent[layer], *pe = kv->pe[layer];
    const float *w_uk = a->kv_b.w + (size_t)h * (a->nope + a->v_dim) * L;   /* [nope, L] */
    const float *w_uv = w_uk + (size_t)a->nope * L;                         /* [v, L] */
    float *q_abs = work, *scores = work + L, *o_lat = scores + T;
    for (int i = 0; i < m; i++) {
        const float *qi = q + (size_t)i * ldq + h * qk;
        int visible = p0 + i + 1;
        for (int c = 0; c < L; c++) q_abs[c] = 0.0f;
        for (int d = 0; d < a->nope; d++) axpy(q_abs, qi[d], w_uk + (size_t)d * L, L);   /* q_nope W_uk */
        gemm_rows(q_abs, lat, scores, 1, visible, L);                                    /* q_abs . c_kv[t] */
        for (int t = 0; t < visible; t++) {
            const float *pt = pe + (size_t)t * a->rope;
            float s = 0.0f;
            for (int r = 0; r < a->rope; r++) s += qi[a->nope + r] * pt[r];
            scores[t] = (scores[t] + s) * a->softmax_scale;
        }
        softmax_row(scores, visible);
        for (int c = 0; c < L; c++) o_lat[c] = 0.0f;
        for (int t = 0; t < visible; t++) axpy(o_lat, scores[t], lat + (size_t)t * L, L);
        gemm_rows(o_lat, w_uv, out + (size_t)i * ldo, 1, a->v_dim, L);                   /* W_uv o_lat */
    }
}

static int mla_check_room(const mla_seq_t *seqs, int n_seqs, int layer, const rope_t *rope, spex_err_t *err) {
    for (int s = 0; s < n_seqs; s++) {
        int need = seqs[s].kv->len[layer] + seqs[s].n;
        if (need > seqs[s].kv->capacity)
            return spex_fail(err, "sequence %d needs %d tokens of KV cache, capacity is %d", s, need,
                             seqs[s].kv->capacity);
        if (need > rope->max_pos)
            return spex_fail(err, "sequence %d reaches position %d, beyond max_position_embeddings %d", s, need,
                             rope->max_pos);
    }
    return 0;
}

int mla_forward(const mla_t *a, const rope_t *rope, int layer, const mla_seq_t *seqs, int n_seqs, const float *x,
                float *out, bool exact, spex_err_t *err) {
    if (mla_check_room(seqs, n_seqs, layer, rope, err)) return -1;
    int n = 0, max_m = 0, max_T = 0;
    for (int s = 0; s < n_seqs; s++) {
        n += seqs[s].n;
        if (seqs[s].n > max_m) max_m = seqs[s].n;
        int T = seqs[s].kv->len[layer] + seqs[s].n;
        if (T > max_T) max_T = T;
    }
    int H = a->n_heads, qk = a->nope + a->rope, L = a->kv_lora;
    size_t q_sz = (size_t)n * H * qk, kva_sz = (size_t)n * (L + a->rope), att_sz = (size_t)n * H * a->v_dim;
    size_t scratch_sz = (size_t)n * (a->q_lora > 0 ? a->q_lora : 1);
    size_t work_sz = (size_t)max_m * (2 * L + max_T);
    float *buf = malloc(sizeof(float) * (q_sz + kva_sz + att_sz + scratch_sz + work_sz));
    if (!buf) return spex_fail(err, "attention: out of memory for %d rows", n);
    float *q = buf, *kva = q + q_sz, *att = kva + kva_sz, *scratch = att + att_sz, *work = scratch + scratch_sz;

    mla_query(a, x, q, n, scratch, exact);                /* q[n, H*qk] */
    linear_apply(&a->kv_a, x, kva, n, exact);             /* kva[n, L + rope] */
    int row = 0;
    for (int s = 0; s < n_seqs; s++) {
        int m = seqs[s].n, p0 = seqs[s].kv->len[layer];
        for (int i = 0; i < m; i++)
            for (int h = 0; h < H; h++) rope_apply(rope, q + (size_t)(row + i) * H * qk + h * qk + a->nope, p0 + i);
        mla_append(a, rope, seqs[s].kv, layer, kva + (size_t)row * (L + a->rope), m);
        for (int h = 0; h < H; h++)
            (exact ? mla_head_exact : mla_head)(a, seqs[s].kv, layer, h, q + (size_t)row * H * qk, H * qk, m,
                                                att + (size_t)row * H * a->v_dim + h * a->v_dim, H * a->v_dim, work);
        row += m;
    }
    linear_apply(&a->o_proj, att, out, n, exact);         /* out[n, hidden] */
    free(buf);
    return 0;
}
