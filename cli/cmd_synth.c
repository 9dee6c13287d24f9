/* cmd_synth.c - `spex synth`: write a random DeepSeek-V3-architecture checkpoint
 * from a preset plus per-field overrides, in any dtype, optionally sharded.
 * The work is tools/synth.c; this file parses options and shows progress. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli_opts.h"
#include "cli/cli_util.h"
#include "cli/commands.h"
#include "tools/synth.h"

enum { N_OVERRIDES = 16 };

typedef struct synth_args {
    const char *out, *preset, *dtype;
    double skew;
    long seed, shards;
    bool force;
    long ov[N_OVERRIDES];   /* config overrides, -1 = the preset's value; in the order of OVERRIDES */
} synth_args_t;

static const cli_option_t SYNTH_OPTIONS[] = {
    CLI_OPT_NEEDED("--out", "DIR", synth_args_t, out, "where to write the checkpoint"),
    CLI_OPT_STRING("--preset", "NAME", synth_args_t, preset,
                   "the config to start from: tiny, small, medium,\nlarge, bench-medium, 16b or v3-shape"),
    CLI_OPT_STRING("--dtype", "f32|bf16|f16|fp8", synth_args_t, dtype, "tensor type"),
    CLI_OPT_INT("--seed", NULL, "N", synth_args_t, seed, 0, 0x7fffffffL,
                "values depend only on the seed and the tensor name"),
    CLI_OPT_INT("--shards", NULL, "N", synth_args_t, shards, 1, 99999, "number of safetensors files"),
    CLI_OPT_FLAG("--force", synth_args_t, force, "replace a checkpoint already in DIR"),
    CLI_OPT_DOUBLE("--skew", "S", synth_args_t, skew, 0, 10,
                   "expert popularity ~ (1 + rank)^-S per layer, through\nthe router's selection bias (default 0: none)"),
};

#define OVERRIDE(nm, i, lo, hlp) CLI_OPT_INT(nm, NULL, "N", synth_args_t, ov[i], lo, 1 << 24, hlp)
static const cli_option_t OVERRIDES[N_OVERRIDES] = {
    OVERRIDE("--hidden", 0, 1, "hidden_size"), OVERRIDE("--layers", 1, 1, "num_hidden_layers"),
    OVERRIDE("--dense-layers", 2, 0, "first_k_dense_replace"), OVERRIDE("--heads", 3, 1, "num_attention_heads"),
    OVERRIDE("--experts", 4, 0, "n_routed_experts"), OVERRIDE("--experts-per-tok", 5, 1, "num_experts_per_tok"),
    OVERRIDE("--groups", 6, 1, "n_group"), OVERRIDE("--topk-groups", 7, 1, "topk_group"),
    OVERRIDE("--shared", 8, 0, "n_shared_experts"), OVERRIDE("--moe-inter", 9, 1, "moe_intermediate_size"),
    OVERRIDE("--inter", 10, 1, "intermediate_size"), OVERRIDE("--vocab", 11, 2, "vocab_size"),
    OVERRIDE("--q-lora", 12, 0, "q_lora_rank (0 = plain q_proj)"), OVERRIDE("--kv-lora", 13, 1, "kv_lora_rank"),
    OVERRIDE("--mtp", 14, 0, "num_nextn_predict_layers"), OVERRIDE("--max-pos", 15, 1, "max_position_embeddings"),
};

/* The config fields of OVERRIDES, in its order. */
static int *override_field(spex_config_t *c, int i) {
    int *f[N_OVERRIDES] = {&c->hidden_size, &c->num_hidden_layers, &c->first_k_dense_replace,
                           &c->num_attention_heads, &c->n_routed_experts, &c->num_experts_per_tok, &c->n_group,
                           &c->topk_group, &c->n_shared_experts, &c->moe_intermediate_size, &c->intermediate_size,
                           &c->vocab_size, &c->q_lora_rank, &c->kv_lora_rank, &c->num_nextn_predict_layers,
                           &c->max_position_embeddings};
    return f[i];
}

/* Options into a, then the preset with the overrides into cfg. -1 to go on, else the exit status. */
static int parse_args(int argc, char **argv, synth_args_t *a, spex_config_t *cfg) {
    *a = (synth_args_t){.preset = "tiny", .dtype = "f32", .seed = 1, .shards = 1};
    for (int i = 0; i < N_OVERRIDES; i++) a->ov[i] = -1;
    cli_group_t groups[] = {CLI_GROUP(NULL, SYNTH_OPTIONS, a), CLI_GROUP("config overrides", OVERRIDES, a)};
    cli_spec_t spec = CLI_SPEC("synth", "synth --out DIR [options] [config overrides]",
                               "Writes a random DeepSeek-V3-architecture checkpoint in the Hugging Face layout.", groups);
    int rc = cli_run_parse(&spec, argc, argv, 1);
    if (rc >= 0) return rc;
    spex_err_t err = {{0}};
    if (synth_preset(a->preset, cfg, &err)) return cli_usage_error(&spec, "%s", err.msg);
    for (int i = 0; i < N_OVERRIDES; i++)
        if (a->ov[i] >= 0) *override_field(cfg, i) = (int)a->ov[i];
    return -1;
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
    synth_args_t a;
    spex_config_t cfg;
    spex_err_t err = {0};
    int rc = parse_args(argc, argv, &a, &cfg);
    if (rc >= 0) return rc;
    synth_opts_t o = {.seed = (uint64_t)a.seed, .shards = (int)a.shards, .overwrite = a.force, .skew = a.skew};
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
    printf("wrote %s: preset %s, %s, %.1f MB of tensors in %ld file%s, seed %ld", a.out, a.preset, a.dtype,
           bytes / 1e6, a.shards, a.shards > 1 ? "s" : "", a.seed);
    if (o.skew > 0) printf(", skew %g", o.skew);
    putchar('\n');
    return 0;
}
