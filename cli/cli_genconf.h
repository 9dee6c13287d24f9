/* cli_genconf.h - generation_config.json in the commands that decode
 * (`serve`, `batch`, `generate`): the --no-generation-config option, loading
 * the file with a start-up line saying what it supplies, and turning it into
 * request defaults. What the command line or a request sets itself always
 * wins; these only fill what is left out. */
#ifndef SPEX_CLI_GENCONF_H
#define SPEX_CLI_GENCONF_H

#include <stdbool.h>

#include "cli/cli_opts.h"
#include "coordinator/decode/gen_config.h"
#include "server/api.h"

/* --no-generation-config, over `off`. */
cli_group_t cli_gen_config_group(bool *off);

/* Load DIR/generation_config.json unless `off` (then *gc is empty), and log
 * what it supplies as "<cmd>: generation_config.json: ...". */
int cli_gen_config_load(const char *cmd, const char *dir, bool off, int vocab_size, gen_config_t *gc,
                        spex_err_t *err);

/* Overwrite d's temperature, top_p, top_k and max_tokens with those gc has. */
void cli_gen_config_api(const gen_config_t *gc, api_defaults_t *d);

#endif
