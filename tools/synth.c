/* synth.c - see synth.h: presets, deterministic random values, the
 * tensor -> file plan (dtype per tensor, shards) and the streaming writer loop. */
#include "tools/synth.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fnmatch.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/dtype.h"
#include "core/safetensors_write.h"

/* ---------------------------------------------------------------- presets */

/* The golden tiny-f32 config: 3 layers (1 dense), 16 experts in 4 groups, YaRN, 1 MTP layer. */
static void preset_tiny(spex_config_t *c) {
    memset(c, 0, sizeof *c);
    c->vocab_size = 320;
    c->hidden_size = 128;
    c->intermediate_size = 288;
    c->moe_intermediate_size = 96;
    c->num_hidden_layers = 3;
    c->num_attention_heads = 4;
    c->q_lora_rank = 96;
    c->kv_lora_rank = 64;
    c->qk_nope_head_dim = 32;
    c->qk_rope_head_dim = 16;
    c->v_head_dim = 24;
    c->n_routed_experts = 16;
    c->n_shared_experts = 1;
    c->num_experts_per_tok = 4;
    c->n_group = 4;
    c->topk_group = 2;
    c->routed_scaling_factor = 2.5;
    c->norm_topk_prob = true;
    c->scoring_func = SCORING_SIGMOID;
    c->topk_method = TOPK_NOAUX_TC;
    c->first_k_dense_replace = 1;
    c->moe_layer_freq = 1;
    c->num_nextn_predict_layers = 1;
    c->rope_theta = 10000.0;
    c->rope_scaling = (spex_rope_scaling_t){true, 40.0, 64, 32.0, 1.0, 1.0, 1.0};
    c->rms_norm_eps = 1e-6;
    c->max_position_embeddings = 256;
    c->bos_token_id = 0;
    c->eos_token_id = 1;
}

/* Shared shape of the bigger presets (MLA dims scale with hidden). */
static void preset_scaled(spex_config_t *c, int hidden, int heads, int experts, int moe_inter, int vocab) {
    preset_tiny(c);
    c->hidden_size = hidden;
    c->num_attention_heads = heads;
    c->q_lora_rank = hidden * 3 / 4;
    c->kv_lora_rank = hidden / 2;
    c->qk_nope_head_dim = 64;
    c->qk_rope_head_dim = 32;
    c->v_head_dim = 64;
    c->intermediate_size = hidden * 3;
    c->moe_intermediate_size = moe_inter;
    c->n_routed_experts = experts;
    c->num_hidden_layers = 4;
    c->vocab_size = vocab;
    c->max_position_embeddings = 4096;
    c->rope_scaling.original_max_position_embeddings = 1024;
    c->rope_scaling.factor = 4.0;
}

/* The performance benchmark of issue 12: DeepSeek-V3's shape at 1.71 B parameters
 * (1.0 GB of BF16 weights read per decoded token). No MTP layer unless overridden
 * (--num_nextn_predict_layers 1 gives the memory-bound model with MTP). */
static void preset_bench_medium(spex_config_t *c) {
    preset_tiny(c);
    c->hidden_size = 2048;
    c->num_hidden_layers = 8;
    c->first_k_dense_replace = 1;
    c->intermediate_size = 5632;
    c->num_attention_heads = 16;
    c->q_lora_rank = 768;
    c->kv_lora_rank = 512;
    c->qk_nope_head_dim = 128;
    c->qk_rope_head_dim = 64;
    c->v_head_dim = 128;
    c->n_routed_experts = 32;
    c->num_experts_per_tok = 6;
    c->moe_intermediate_size = 1024;
    c->n_shared_experts = 1;
    c->n_group = 8;
    c->topk_group = 4;
    c->vocab_size = 32768;
    c->num_nextn_predict_layers = 0;
    c->rope_scaling = (spex_rope_scaling_t){true, 40.0, 4096, 32.0, 1.0, 1.0, 1.0};
    c->max_position_embeddings = 163840;
}

/* Moonlight-16B-A3B / DeepSeek-V2-Lite class: 16.0 B parameters, 2.9 B active. */
static void preset_16b(spex_config_t *c) {
    preset_bench_medium(c);
    c->num_hidden_layers = 27;
    c->intermediate_size = 11264;
    c->q_lora_rank = 0;
    c->n_routed_experts = 64;
    c->moe_intermediate_size = 1408;
    c->n_shared_experts = 2;
    c->n_group = 1;
    c->topk_group = 1;
    c->vocab_size = 163840;
    c->rope_scaling = (spex_rope_scaling_t){false, 1.0, 8192, 32.0, 1.0, 1.0, 1.0};
    c->max_position_embeddings = 8192;
}

/* DeepSeek-V3's proportions at hidden 1024, for `bench spec --project`: its
 * routing exactly (256 experts, top-8 from 4 of 8 groups, one shared expert),
 * so K+1 verify rows pick as many distinct experts as V3's would; attention
 * ~0.46 of the routed weights a token reads (V3: 0.56), routed experts 55%
 * of its bytes per token (V3: ~55%); one MTP layer among 30, ~8% of a step
 * with the output head. 6.3 GB in FP8, 0.33 GB read per decoded token. */
static void preset_v3_shape(spex_config_t *c) {
    preset_bench_medium(c);
    c->hidden_size = 1024;
    c->num_hidden_layers = 30;
    c->first_k_dense_replace = 1;
    c->intermediate_size = 2816;
    c->num_attention_heads = 8;
    c->q_lora_rank = 384;
    c->kv_lora_rank = 256;
    c->n_routed_experts = 256;
    c->num_experts_per_tok = 8;
    c->moe_intermediate_size = 256;
    c->n_shared_experts = 1;
    c->n_group = 8;
    c->topk_group = 4;
    c->vocab_size = 8192;
    c->num_nextn_predict_layers = 1;
}

int synth_preset(const char *name, spex_config_t *cfg, spex_err_t *err) {
    if (!strcmp(name, "tiny")) {
        preset_tiny(cfg);
    } else if (!strcmp(name, "small")) {
        /* experts of 0.75 MB in f32 */
        preset_scaled(cfg, 256, 8, 32, 256, 2048);
        cfg->qk_nope_head_dim = 32;
        cfg->qk_rope_head_dim = 16;
        cfg->v_head_dim = 32;
        cfg->max_position_embeddings = 1024;
        cfg->rope_scaling.original_max_position_embeddings = 256;
    } else if (!strcmp(name, "medium")) {
        /* experts of 3 MB in f32, 8 groups of 8, top-6 from 4 groups */
        preset_scaled(cfg, 512, 8, 64, 512, 8192);
        cfg->num_experts_per_tok = 6;
        cfg->n_group = 8;
        cfg->topk_group = 4;
    } else if (!strcmp(name, "large")) {
        /* experts of 6 MB in f32 */
        preset_scaled(cfg, 1024, 16, 64, 512, 8192);
        cfg->num_experts_per_tok = 8;
        cfg->n_group = 8;
        cfg->topk_group = 4;
    } else if (!strcmp(name, "bench-medium")) {
        preset_bench_medium(cfg);
    } else if (!strcmp(name, "16b")) {
        preset_16b(cfg);
    } else if (!strcmp(name, "v3-shape")) {
        preset_v3_shape(cfg);
    } else {
        return spex_fail(err, "unknown preset '%s' (tiny, small, medium, large, bench-medium, 16b, v3-shape)", name);
    }
    return 0;
}

static const char *const DTYPE_NAMES[] = {"f32", "bf16", "f16", "fp8"};

int synth_dtype_parse(const char *s, synth_dtype_t *out) {
    for (int i = 0; i < 4; i++)
        if (!strcmp(s, DTYPE_NAMES[i])) { *out = (synth_dtype_t)i; return 0; }
    return -1;
}

const char *synth_dtype_name(synth_dtype_t d) { return (unsigned)d < 4 ? DTYPE_NAMES[d] : "?"; }

/* ---------------------------------------------------------------- values */

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t fnv1a(const char *s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
    return h;
}

void synth_tensor_values(const model_tensor_t *t, uint64_t seed, float *out) {
    uint64_t st = seed * 0x9E3779B97F4A7C15ull ^ fnv1a(t->name);
    int64_t numel = t->shape[0] * (t->ndim == 2 ? t->shape[1] : 1);
    double fan_in = t->ndim == 2 ? (double)t->shape[1] : 1.0;
    double center = 0, half;   /* uniform in [center - half, center + half] */
    switch (t->kind) {
    case MT_NORM: center = 1.0; half = 0.05; break;
    case MT_ROUTER_BIAS: half = 0.02; break;
    case MT_EMBED: half = sqrt(3.0); break;                           /* std 1 */
    case MT_HEAD: case MT_ROUTER: half = sqrt(3.0 / fan_in); break;   /* std 1/sqrt(H) */
    default: half = 0.5 * sqrt(3.0 / fan_in); break;                  /* std 0.5/sqrt(fan_in) */
    }
    for (int64_t i = 0; i < numel; i++) {
        double u = (double)(splitmix64(&st) >> 40) / 16777216.0;    /* [0, 1) */
        out[i] = (float)(center + half * (2.0 * u - 1.0));
    }
}

void synth_skew_bias(const model_tensor_t *t, uint64_t seed, double skew, float *bias) {
    if (t->kind != MT_ROUTER_BIAS || skew <= 0) return;
    int n = (int)t->shape[0];
    int *rank = malloc(sizeof(int) * (size_t)(n > 0 ? n : 1));
    if (!rank) return;
    uint64_t st = seed * 0xD1B54A32D192ED03ull ^ fnv1a(t->name);
    for (int i = 0; i < n; i++) {   /* rank[i]: expert i's popularity rank, a permutation per tensor (inside-out Fisher-Yates) */
        int j = (int)(splitmix64(&st) % (uint64_t)(i + 1));
        rank[i] = rank[j];
        rank[j] = i;
    }
    for (int i = 0; i < n; i++) bias[i] -= (float)(SYNTH_SKEW_SCALE * skew * log(1.0 + rank[i]));
    free(rank);
}

/* ---------------------------------------------------------------- plan */

/* One model tensor in the output: its dtype, bytes (+ FP8 scale bytes), shard. */
typedef struct plan_entry {
    const model_tensor_t *t;
    spex_dtype_t dtype;
    int64_t sshape[2];        /* scale_inv shape when dtype is F8_E4M3 */
    uint64_t bytes, scale_bytes;
    int shard;
} plan_entry_t;

typedef struct plan {
    model_tensor_t *mt;
    plan_entry_t *e;
    size_t n;
    uint64_t total;
    int64_t max_numel, max_scales;
    int block[2];
    int shards;
} plan_t;

static spex_dtype_t out_dtype(const model_tensor_t *t, synth_dtype_t d) {
    if (t->kind == MT_ROUTER_BIAS) return DTYPE_F32;
    switch (d) {
    case SYNTH_F32: return DTYPE_F32;
    case SYNTH_BF16: return DTYPE_BF16;
    case SYNTH_F16: return DTYPE_F16;
    default: return t->kind == MT_LINEAR ? DTYPE_F8_E4M3 : DTYPE_BF16;
    }
}

static void plan_free(plan_t *p) {
    free(p->mt);
    free(p->e);
}

/* Consecutive runs of tensors per shard, split near equal byte counts. */
static int plan_shards(plan_t *p, int shards, spex_err_t *err) {
    if ((size_t)shards > p->n) return spex_fail(err, "%d shards but only %zu tensors", shards, p->n);
    p->shards = shards;
    uint64_t before = 0;
    int cur = 0;
    size_t in_cur = 0;
    for (size_t i = 0; i < p->n; i++) {
        bool full = before >= (uint64_t)((double)p->total * (cur + 1) / shards);
        bool must = p->n - i <= (size_t)(shards - 1 - cur);   /* one tensor left per remaining shard */
        if (in_cur > 0 && cur < shards - 1 && (full || must)) { cur++; in_cur = 0; }
        p->e[i].shard = cur;
        in_cur++;
        before += p->e[i].bytes + p->e[i].scale_bytes;
    }
    return 0;
}

static int plan_make(plan_t *p, const spex_config_t *cfg, synth_dtype_t dtype, int shards, spex_err_t *err) {
    memset(p, 0, sizeof *p);
    p->block[0] = cfg->fp8_block[0] > 0 ? cfg->fp8_block[0] : 128;
    p->block[1] = cfg->fp8_block[1] > 0 ? cfg->fp8_block[1] : 128;
    if (model_tensors(cfg, &p->mt, &p->n, err)) return -1;
    p->e = calloc(p->n, sizeof *p->e);
    if (!p->e) { plan_free(p); return spex_fail(err, "out of memory"); }
    for (size_t i = 0; i < p->n; i++) {
        plan_entry_t *e = &p->e[i];
        e->t = &p->mt[i];
        e->dtype = out_dtype(e->t, dtype);
        int64_t numel = e->t->shape[0] * (e->t->ndim == 2 ? e->t->shape[1] : 1);
        e->bytes = (uint64_t)numel * dtype_size(e->dtype);
        if (e->dtype == DTYPE_F8_E4M3) {
            e->sshape[0] = (e->t->shape[0] + p->block[0] - 1) / p->block[0];
            e->sshape[1] = (e->t->shape[1] + p->block[1] - 1) / p->block[1];
            e->scale_bytes = (uint64_t)(e->sshape[0] * e->sshape[1]) * 4;
            if (e->sshape[0] * e->sshape[1] > p->max_scales) p->max_scales = e->sshape[0] * e->sshape[1];
        }
        if (numel > p->max_numel) p->max_numel = numel;
        p->total += e->bytes + e->scale_bytes;
    }
    if (plan_shards(p, shards < 1 ? 1 : shards, err)) { plan_free(p); return -1; }
    return 0;
}

int synth_data_bytes(const spex_config_t *cfg, synth_dtype_t dtype, uint64_t *bytes, spex_err_t *err) {
    plan_t p;
    if (plan_make(&p, cfg, dtype, 1, err)) return -1;
    *bytes = p.total;
    plan_free(&p);
    return 0;
}

/* ---------------------------------------------------------------- encoding */

/* FP8 with one scale per block: scale = amax/448, q = e4m3(w / scale). w is [rows, cols]. */
static void encode_fp8(const float *w, int64_t rows, int64_t cols, const int block[2], uint8_t *q, float *scales) {
    int64_t sc = (cols + block[1] - 1) / block[1];
    for (int64_t br = 0; br * block[0] < rows; br++)
        for (int64_t bc = 0; bc < sc; bc++) {
            int64_t r1 = (br + 1) * block[0] < rows ? (br + 1) * block[0] : rows;
            int64_t c0 = bc * block[1], c1 = c0 + block[1] < cols ? c0 + block[1] : cols;
            float amax = 0;
            for (int64_t r = br * block[0]; r < r1; r++)
                for (int64_t c = c0; c < c1; c++) amax = fmaxf(amax, fabsf(w[r * cols + c]));
            float s = amax > 0 ? amax / 448.0f : 1.0f;
            scales[br * sc + bc] = s;
            for (int64_t r = br * block[0]; r < r1; r++)
                for (int64_t c = c0; c < c1; c++) q[r * cols + c] = f32_to_e4m3(w[r * cols + c] / s);
        }
}

/* w (f32) -> buf in e->dtype (and scales for FP8). */
static void encode(const plan_entry_t *e, const int block[2], const float *w, uint8_t *buf, float *scales) {
    int64_t numel = e->t->shape[0] * (e->t->ndim == 2 ? e->t->shape[1] : 1);
    switch (e->dtype) {
    case DTYPE_F8_E4M3:
        encode_fp8(w, e->t->shape[0], e->t->shape[1], block, buf, scales);
        break;
    case DTYPE_BF16: case DTYPE_F16:
        for (int64_t i = 0; i < numel; i++) {
            uint16_t h = e->dtype == DTYPE_BF16 ? f32_to_bf16(w[i]) : f32_to_f16(w[i]);
            buf[2 * i] = (uint8_t)(h & 0xff);
            buf[2 * i + 1] = (uint8_t)(h >> 8);
        }
        break;
    default:
        memcpy(buf, w, (size_t)numel * 4);
        break;
    }
}

/* ---------------------------------------------------------------- files */

typedef struct writer_ctx {
    const plan_t *p;
    const synth_opts_t *opts;
    float *w, *scales;        /* scratch: max_numel floats, max_scales floats */
    uint8_t *buf;             /* scratch: max_numel * 4 bytes */
    uint64_t done;
} writer_ctx_t;

static void shard_name(char *out, size_t cap, int shard, int shards) {
    if (shards <= 1) snprintf(out, cap, "model.safetensors");
    else snprintf(out, cap, "model-%05d-of-%05d.safetensors", shard + 1, shards);
}

static char *join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static int declare_shard(st_writer_t *w, const plan_t *p, int shard, spex_err_t *err) {
    for (size_t i = 0; i < p->n; i++) {
        const plan_entry_t *e = &p->e[i];
        if (e->shard != shard) continue;
        if (st_writer_declare(w, e->t->name, e->dtype, e->t->ndim, e->t->shape, err)) return -1;
        if (e->dtype != DTYPE_F8_E4M3) continue;
        char sname[MODEL_TENSOR_NAME_MAX + 16];
        snprintf(sname, sizeof sname, "%s_scale_inv", e->t->name);
        if (st_writer_declare(w, sname, DTYPE_F32, 2, e->sshape, err)) return -1;
    }
    return 0;
}

/* Generate, encode and stream each tensor of the shard, in declaration order. */
static int fill_shard(st_writer_t *w, writer_ctx_t *c, int shard, spex_err_t *err) {
    const plan_t *p = c->p;
    for (size_t i = 0; i < p->n; i++) {
        const plan_entry_t *e = &p->e[i];
        if (e->shard != shard) continue;
        synth_tensor_values(e->t, c->opts->seed, c->w);
        synth_skew_bias(e->t, c->opts->seed, c->opts->skew, c->w);
        encode(e, p->block, c->w, c->buf, c->scales);
        if (st_writer_put(w, c->buf, e->bytes, err)) return -1;
        if (e->scale_bytes && st_writer_put(w, c->scales, e->scale_bytes, err)) return -1;
        c->done += e->bytes + e->scale_bytes;
        if (c->opts->progress) c->opts->progress(c->opts->progress_ctx, c->done, p->total);
    }
    return 0;
}

static int write_shard(const char *dir, writer_ctx_t *c, int shard, spex_err_t *err) {
    char name[64];
    shard_name(name, sizeof name, shard, c->p->shards);
    char *path = join(dir, name);
    st_writer_t *w = st_writer_create();
    int rc = (!path || !w) ? spex_fail(err, "out of memory") : 0;
    if (!rc) rc = declare_shard(w, c->p, shard, err) || st_writer_begin(w, path, err) ||
                  fill_shard(w, c, shard, err) || st_writer_finish(w, err);
    st_writer_free(w);
    free(path);
    return rc ? -1 : 0;
}

/* Write text to dir/name through a temp file + rename. */
static int write_text(const char *dir, const char *name, const char *text, spex_err_t *err) {
    char *path = join(dir, name), *tmp = join(dir, ".synth.tmp");
    int rc = 0;
    FILE *f = path && tmp ? fopen(tmp, "w") : NULL;
    if (!f) rc = spex_fail(err, "%s/%s: cannot write: %s", dir, name, strerror(errno));
    else {
        bool ok = fputs(text, f) >= 0 && fputc('\n', f) != EOF;
        ok = (fclose(f) == 0) && ok;
        if (!ok || rename(tmp, path) != 0) {
            rc = spex_fail(err, "%s: write failed: %s", path, strerror(errno));
            unlink(tmp);
        }
    }
    free(path);
    free(tmp);
    return rc;
}

typedef struct { const char *name; int shard; } wm_entry_t;

static int wm_cmp(const void *a, const void *b) {
    return strcmp(((const wm_entry_t *)a)->name, ((const wm_entry_t *)b)->name);
}

/* model.safetensors.index.json: total_size + weight_map sorted by name. */
static char *index_json(const plan_t *p, char (*snames)[MODEL_TENSOR_NAME_MAX + 16]) {
    size_t n = 0;
    wm_entry_t *wm = malloc(2 * p->n * sizeof *wm);
    if (!wm) return NULL;
    for (size_t i = 0; i < p->n; i++) {
        wm[n++] = (wm_entry_t){p->e[i].t->name, p->e[i].shard};
        if (p->e[i].scale_bytes) {
            snprintf(snames[i], sizeof snames[i], "%s_scale_inv", p->e[i].t->name);
            wm[n++] = (wm_entry_t){snames[i], p->e[i].shard};
        }
    }
    qsort(wm, n, sizeof *wm, wm_cmp);
    cJSON *root = cJSON_CreateObject(), *meta = cJSON_AddObjectToObject(root, "metadata");
    cJSON_AddNumberToObject(meta, "total_size", (double)p->total);
    cJSON *map = cJSON_AddObjectToObject(root, "weight_map");
    for (size_t i = 0; i < n; i++) {
        char file[64];
        shard_name(file, sizeof file, wm[i].shard, p->shards);
        cJSON_AddStringToObject(map, wm[i].name, file);
    }
    free(wm);
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    return text;
}

static int write_index(const char *dir, const plan_t *p, spex_err_t *err) {
    char (*snames)[MODEL_TENSOR_NAME_MAX + 16] = calloc(p->n, sizeof *snames);
    char *text = snames ? index_json(p, snames) : NULL;
    int rc = text ? write_text(dir, "model.safetensors.index.json", text, err) : spex_fail(err, "out of memory");
    free(text);
    free(snames);
    return rc;
}

/* ---------------------------------------------------------------- config.json */

char *synth_config_json(const spex_config_t *c, synth_dtype_t dtype) {
    static const char *const TORCH[] = {"float32", "bfloat16", "float16", "bfloat16"};
    static const char *const SCORING[] = {"sigmoid", "softmax"};
    static const char *const TOPK[] = {"noaux_tc", "greedy", "group_limited_greedy"};
    cJSON *j = cJSON_CreateObject();
    cJSON *arch = cJSON_AddArrayToObject(j, "architectures");
    cJSON_AddItemToArray(arch, cJSON_CreateString("DeepseekV3ForCausalLM"));
    cJSON_AddStringToObject(j, "model_type", "deepseek_v3");
    cJSON_AddBoolToObject(j, "attention_bias", false);
    cJSON_AddNumberToObject(j, "attention_dropout", 0.0);
    if (c->bos_token_id >= 0) cJSON_AddNumberToObject(j, "bos_token_id", c->bos_token_id);
    if (c->eos_token_id >= 0) cJSON_AddNumberToObject(j, "eos_token_id", c->eos_token_id);
    cJSON_AddNumberToObject(j, "ep_size", 1);
    cJSON_AddNumberToObject(j, "first_k_dense_replace", c->first_k_dense_replace);
    cJSON_AddStringToObject(j, "hidden_act", "silu");
    cJSON_AddNumberToObject(j, "hidden_size", c->hidden_size);
    cJSON_AddNumberToObject(j, "initializer_range", 0.02);
    cJSON_AddNumberToObject(j, "intermediate_size", c->intermediate_size);
    cJSON_AddNumberToObject(j, "kv_lora_rank", c->kv_lora_rank);
    cJSON_AddNumberToObject(j, "max_position_embeddings", c->max_position_embeddings);
    cJSON_AddNumberToObject(j, "moe_intermediate_size", c->moe_intermediate_size);
    cJSON_AddNumberToObject(j, "moe_layer_freq", c->moe_layer_freq);
    cJSON_AddNumberToObject(j, "n_group", c->n_group);
    cJSON_AddNumberToObject(j, "n_routed_experts", c->n_routed_experts);
    cJSON_AddNumberToObject(j, "n_shared_experts", c->n_shared_experts);
    cJSON_AddBoolToObject(j, "norm_topk_prob", c->norm_topk_prob);
    cJSON_AddNumberToObject(j, "num_attention_heads", c->num_attention_heads);
    cJSON_AddNumberToObject(j, "num_experts_per_tok", c->num_experts_per_tok);
    cJSON_AddNumberToObject(j, "num_hidden_layers", c->num_hidden_layers);
    cJSON_AddNumberToObject(j, "num_key_value_heads", c->num_attention_heads);
    cJSON_AddNumberToObject(j, "num_nextn_predict_layers", c->num_nextn_predict_layers);
    cJSON_AddNumberToObject(j, "pretraining_tp", 1);
    if (c->q_lora_rank > 0) cJSON_AddNumberToObject(j, "q_lora_rank", c->q_lora_rank);
    else cJSON_AddNullToObject(j, "q_lora_rank");
    cJSON_AddNumberToObject(j, "qk_nope_head_dim", c->qk_nope_head_dim);
    cJSON_AddNumberToObject(j, "qk_rope_head_dim", c->qk_rope_head_dim);
    cJSON_AddNumberToObject(j, "rms_norm_eps", c->rms_norm_eps);
    if (c->rope_scaling.yarn) {
        const spex_rope_scaling_t *r = &c->rope_scaling;
        cJSON *rs = cJSON_AddObjectToObject(j, "rope_scaling");
        cJSON_AddNumberToObject(rs, "beta_fast", r->beta_fast);
        cJSON_AddNumberToObject(rs, "beta_slow", r->beta_slow);
        cJSON_AddNumberToObject(rs, "factor", r->factor);
        cJSON_AddNumberToObject(rs, "mscale", r->mscale);
        cJSON_AddNumberToObject(rs, "mscale_all_dim", r->mscale_all_dim);
        cJSON_AddNumberToObject(rs, "original_max_position_embeddings", r->original_max_position_embeddings);
        cJSON_AddStringToObject(rs, "type", "yarn");
    } else {
        cJSON_AddNullToObject(j, "rope_scaling");
    }
    cJSON_AddNumberToObject(j, "rope_theta", c->rope_theta);
    cJSON_AddNumberToObject(j, "routed_scaling_factor", c->routed_scaling_factor);
    cJSON_AddStringToObject(j, "scoring_func", SCORING[c->scoring_func == SCORING_SOFTMAX]);
    cJSON_AddBoolToObject(j, "seq_aux", true);
    cJSON_AddBoolToObject(j, "tie_word_embeddings", c->tie_word_embeddings);
    cJSON_AddNumberToObject(j, "topk_group", c->topk_group);
    cJSON_AddStringToObject(j, "topk_method", TOPK[(unsigned)c->topk_method < 3 ? c->topk_method : 0]);
    cJSON_AddStringToObject(j, "torch_dtype", TORCH[(unsigned)dtype < 4 ? dtype : 0]);
    cJSON_AddBoolToObject(j, "use_cache", true);
    cJSON_AddNumberToObject(j, "v_head_dim", c->v_head_dim);
    cJSON_AddNumberToObject(j, "vocab_size", c->vocab_size);
    if (dtype == SYNTH_FP8) {
        cJSON *q = cJSON_AddObjectToObject(j, "quantization_config");
        cJSON_AddStringToObject(q, "activation_scheme", "dynamic");
        cJSON_AddStringToObject(q, "fmt", "e4m3");
        cJSON_AddStringToObject(q, "quant_method", "fp8");
        int b0 = c->fp8_block[0] > 0 ? c->fp8_block[0] : 128, b1 = c->fp8_block[1] > 0 ? c->fp8_block[1] : 128;
        int block[2] = {b0, b1};
        cJSON_AddItemToObject(q, "weight_block_size", cJSON_CreateIntArray(block, 2));
    }
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    return text;
}

/* ---------------------------------------------------------------- directory */

static int mkdir_p(const char *dir, spex_err_t *err) {
    char path[4096];
    if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path) return spex_fail(err, "%s: path too long", dir);
    for (char *s = path + 1; ; s++) {
        char saved = *s;
        if (saved != '/' && saved != '\0') continue;
        *s = '\0';
        if (mkdir(path, 0755) != 0 && errno != EEXIST)
            return spex_fail(err, "%s: cannot create directory: %s", path, strerror(errno));
        *s = saved;
        if (!saved) break;
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) return spex_fail(err, "%s: not a directory", dir);
    return 0;
}

/* Files of a previous checkpoint that would confuse the loader next to ours. */
static bool is_checkpoint_file(const char *name) {
    return !strcmp(name, "model.safetensors") || !strcmp(name, "model.safetensors.index.json") ||
           !strcmp(name, "config.json") || !fnmatch("model-*-of-*.safetensors", name, 0);
}

/* Refuse (or with overwrite, remove) an existing checkpoint in dir. */
static int clear_dir(const char *dir, bool overwrite, spex_err_t *err) {
    DIR *d = opendir(dir);
    if (!d) return spex_fail(err, "%s: cannot open directory: %s", dir, strerror(errno));
    struct dirent *de;
    int rc = 0;
    while (!rc && (de = readdir(d))) {
        if (!is_checkpoint_file(de->d_name)) continue;
        if (!overwrite) {
            rc = spex_fail(err, "%s: already holds a checkpoint (%s); choose another directory or overwrite "
                           "(spex synth --force)", dir, de->d_name);
            break;
        }
        char *p = join(dir, de->d_name);
        if (!p || unlink(p) != 0) rc = spex_fail(err, "%s/%s: cannot remove: %s", dir, de->d_name, strerror(errno));
        free(p);
    }
    closedir(d);
    return rc;
}

/* The config as config.json text, validated by parsing it back. */
static char *checked_config(const spex_config_t *cfg, synth_dtype_t dtype, spex_err_t *err) {
    char *text = synth_config_json(cfg, dtype);
    if (!text) { spex_fail(err, "out of memory"); return NULL; }
    spex_config_t back;
    if (config_parse(&back, text, "synth config", err)) { free(text); return NULL; }
    return text;
}

static int write_all_shards(const char *dir, const plan_t *p, const synth_opts_t *opts, spex_err_t *err) {
    writer_ctx_t c = {.p = p, .opts = opts};
    c.w = malloc((size_t)p->max_numel * sizeof *c.w + 1);
    c.buf = malloc((size_t)p->max_numel * 4 + 1);
    c.scales = malloc((size_t)p->max_scales * sizeof *c.scales + 1);
    int rc = (!c.w || !c.buf || !c.scales) ? spex_fail(err, "out of memory") : 0;
    for (int s = 0; s < p->shards && !rc; s++) rc = write_shard(dir, &c, s, err);
    free(c.w);
    free(c.buf);
    free(c.scales);
    return rc;
}

int synth_write(const char *dir, const spex_config_t *cfg, const synth_opts_t *opts, spex_err_t *err) {
    if ((unsigned)opts->dtype > SYNTH_FP8) return spex_fail(err, "bad synth dtype %d", (int)opts->dtype);
    char *config = checked_config(cfg, opts->dtype, err);
    if (!config) return -1;
    plan_t p;
    int rc = plan_make(&p, cfg, opts->dtype, opts->shards, err);
    if (rc) { free(config); return -1; }
    rc = mkdir_p(dir, err) || clear_dir(dir, opts->overwrite, err) || write_all_shards(dir, &p, opts, err);
    if (!rc && p.shards > 1) rc = write_index(dir, &p, err);
    /* config.json last: a directory without it is visibly incomplete */
    if (!rc) rc = write_text(dir, "config.json", config, err);
    plan_free(&p);
    free(config);
    return rc ? -1 : 0;
}
