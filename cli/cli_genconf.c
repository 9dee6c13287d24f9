/* cli_genconf.c - see cli_genconf.h. */
#include "cli_genconf.h"

#include "core/log.h"

typedef struct gen_off {
    bool off;
} gen_off_t;

static const cli_option_t GEN_CONFIG_OPTIONS[] = {
    CLI_OPT_FLAG("--no-generation-config", gen_off_t, off,
                 "ignore the model's generation_config.json (its\ntemperature, top_p, top_k, max_new_tokens and\n"
                 "eos_token_id defaults)"),
};

cli_group_t cli_gen_config_group(bool *off) { return (cli_group_t){NULL, GEN_CONFIG_OPTIONS, 1, off, 0}; }

int cli_gen_config_load(const char *cmd, const char *dir, bool off, int vocab_size, gen_config_t *gc,
                        spex_err_t *err) {
    *gc = (gen_config_t){.bos_id = -1, .pad_id = -1};
    if (off) return 0;
    if (gen_config_load(dir, vocab_size, gc, err)) return -1;
    if (!gc->found) return 0;
    char what[512];
    gen_config_describe(gc, what, sizeof what);
    spex_log("%s: generation_config.json: %s (defaults; --no-generation-config to ignore)", cmd, what);
    return 0;
}

void cli_gen_config_api(const gen_config_t *gc, api_defaults_t *d) {
    if (gc->has_temperature) d->temperature = (float)gc->temperature;
    if (gc->has_top_p) d->top_p = (float)gc->top_p;
    if (gc->has_top_k) d->top_k = (int)gc->top_k;
    if (gc->has_max_new_tokens) d->max_tokens = (int)gc->max_new_tokens;
}
