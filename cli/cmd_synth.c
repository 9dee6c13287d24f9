/* cmd_synth.c - `spex synth`: write a random DeepSeek-V3-architecture checkpoint
 * from a preset plus per-field overrides, in any dtype, optionally sharded.
 * The work is tools/synth.c; this file parses options and shows progress. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "tools/synth.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: spex synth --out DIR [--preset tiny|small|medium|large] [--dtype f32|bf16|f16|fp8]\n"
            "                  [--seed N] [--shards N] [--force] [overrides]\n"
            "overrides: --hidden N --layers N --dense-layers N --heads N --experts N --experts-per-tok N\n"
            "           --groups N --topk-groups N --shared N --moe-inter N --inter N --vocab N\n"
            "           --q-lora N (0 = plain q_proj) --kv-lora N --mtp N --max-pos N\n"
            "--force replaces a checkpoint already in DIR. Values depend only on --seed and the tensor name.\n");
}

/* Integer override flags -> config fields. */
typedef struct { const char *flag; int *field; long min; } override_t;

static int parse_override(int argc, char **argv, int *i, spex_config_t *cfg, int *rc) {
    const override_t ov[] = {
        {"--hidden", &cfg->hidden_size, 1}, {"--layers", &cfg->num_hidden_layers, 1},
        {"--dense-layers", &cfg->first_k_dense_replace, 0}, {"--heads", &cfg->num_attention_heads, 1},
        {"--experts", &cfg->n_routed_experts, 0}, {"--experts-per-tok", &cfg->num_experts_per_tok, 1},
        {"--groups", &cfg->n_group, 1}, {"--topk-groups", &cfg->topk_group, 1},
        {"--shared", &cfg->n_shared_experts, 0}, {"--moe-inter", &cfg->moe_intermediate_size, 1},
        {"--inter", &cfg->intermediate_size, 1}, {"--vocab", &cfg->vocab_size, 2},
        {"--q-lora", &cfg->q_lora_rank, 0}, {"--kv-lora", &cfg->kv_lora_rank, 1},
        {"--mtp", &cfg->num_nextn_predict_layers, 0}, {"--max-pos", &cfg->max_position_embeddings, 1},
    };
    for (size_t k = 0; k < sizeof ov / sizeof ov[0]; k++) {
        const char *v;
        int m = cli_opt(argc, argv, i, ov[k].flag, &v);
        if (m < 0) { *rc = 2; return 1; }
        if (m == 0) continue;
        long x;
        if (cli_parse_int(ov[k].flag, v, ov[k].min, 1 << 24, &x)) { *rc = 2; return 1; }
        *ov[k].field = (int)x;
        return 1;
    }
    return 0;
}

typedef struct {
    const char *out, *preset, *dtype;
    long seed, shards;
    bool force;
} synth_args_t;

/* Pass 1: the preset (overrides apply on top of it, wherever they appear). */
static int find_preset(int argc, char **argv, const char **preset) {
    *preset = "tiny";
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--preset")) {
            if (i + 1 >= argc) { fprintf(stderr, "spex: option --preset needs a value\n"); return -1; }
            *preset = argv[++i];
        }
    return 0;
}

/* Integer option: 1 taken, 0 not this option, -1 bad (message printed). */
static int opt_long(int argc, char **argv, int *i, const char *name, long min, long max, long *out) {
    const char *v;
    int m = cli_opt(argc, argv, i, name, &v);
    if (m <= 0) return m;
    return cli_parse_int(name, v, min, max, out) ? -1 : 1;
}

/* Pass 2: everything else. Returns 0 to go on, -1 to exit with *rc. */
static int parse_args(int argc, char **argv, synth_args_t *a, spex_config_t *cfg, int *rc) {
    const char *ignored;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { usage(stdout); *rc = 0; return -1; }
        if (!strcmp(argv[i], "--force")) { a->force = true; continue; }
        int m = cli_opt(argc, argv, &i, "--preset", &ignored);
        if (!m) m = cli_opt(argc, argv, &i, "--out", &a->out);
        if (!m) m = cli_opt(argc, argv, &i, "--dtype", &a->dtype);
        if (!m) m = opt_long(argc, argv, &i, "--seed", 0, 0x7fffffffL, &a->seed);
        if (!m) m = opt_long(argc, argv, &i, "--shards", 1, 99999, &a->shards);
        if (!m && parse_override(argc, argv, &i, cfg, rc)) m = *rc ? -1 : 1;
        if (m > 0) continue;
        if (m == 0) {
            cli_error("synth", "unknown option '%s'", argv[i]);
            usage(stderr);
        }
        *rc = 2;
        return -1;
    }
    if (!a->out) {
        cli_error("synth", "--out DIR is required");
        usage(stderr);
        *rc = 2;
        return -1;
    }
    return 0;
}

typedef struct { int last; } progress_t;

static void show_progress(void *ctx, uint64_t done, uint64_t total) {
    progress_t *p = ctx;
    int pct = total ? (int)(done * 100 / total) : 100;
    if (pct == p->last) return;
    p->last = pct;
    fprintf(stderr, "\rspex synth: %3d%%  %.1f / %.1f MB", pct, done / 1e6, total / 1e6);
    if (done >= total) fputc('\n', stderr);
    fflush(stderr);
}

int cmd_synth(int argc, char **argv) {
    synth_args_t a = {.seed = 1, .shards = 1, .dtype = "f32"};
    spex_config_t cfg;
    spex_err_t err = {0};
    int rc = 0;
    if (find_preset(argc, argv, &a.preset)) return 2;
    if (synth_preset(a.preset, &cfg, &err)) { cli_error("synth", "%s", err.msg); return 2; }
    if (parse_args(argc, argv, &a, &cfg, &rc)) return rc;
    synth_opts_t o = {.seed = (uint64_t)a.seed, .shards = (int)a.shards, .overwrite = a.force};
    if (synth_dtype_parse(a.dtype, &o.dtype)) {
        cli_error("synth", "--dtype: expected f32, bf16, f16 or fp8, got '%s'", a.dtype);
        return 2;
    }
    uint64_t bytes = 0;
    progress_t prog = {-1};
    if (synth_data_bytes(&cfg, o.dtype, &bytes, &err) == 0 && isatty(2) && bytes >= (64u << 20)) {
        o.progress = show_progress;
        o.progress_ctx = &prog;
    }
    if (synth_write(a.out, &cfg, &o, &err)) {
        cli_error("synth", "%s", err.msg);
        return 1;
    }
    printf("wrote %s: preset %s, %s, %.1f MB of tensors in %ld file%s, seed %ld\n", a.out, a.preset, a.dtype,
           bytes / 1e6, a.shards, a.shards > 1 ? "s" : "", a.seed);
    return 0;
}
