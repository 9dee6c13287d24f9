/* cli_chat_template.h - the --chat-template option of `spex serve` and
 * `spex batch`, and loading the chat format it names at startup
 * (coordinator/serve/chat_template.h: auto, builtin or a FILE). */
#ifndef SPEX_CLI_CHAT_TEMPLATE_H
#define SPEX_CLI_CHAT_TEMPLATE_H

#include "cli/cli_opts.h"
#include "coordinator/serve/chat_template.h"

/* The group holding --chat-template auto|builtin|FILE, stored in *choice. */
cli_group_t cli_chat_template_group(const char **choice);

/* Load it for model_dir and log which format chat requests get ("<cmd>: chat
 * format: ..."). NULL with err naming what the interpreter cannot run. */
chat_template_t *cli_chat_template_load(const char *cmd, const char *model_dir, const char *choice, spex_err_t *err);

#endif
