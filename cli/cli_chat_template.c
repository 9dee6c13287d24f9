/* cli_chat_template.c - see cli_chat_template.h. */
#include "cli/cli_chat_template.h"

#include "core/log.h"

static const cli_option_t CHAT_TEMPLATE_OPTIONS[] = {
    {.name = "--chat-template", .type = CLI_STRING, .meta = "auto|builtin|FILE", .off = 0,
     .help = "chat format: auto = the model's template (chat_template.jinja\nor tokenizer_config.json), else the built-in\n"
             "DeepSeek-V3 format; builtin = always that; FILE = a\nJinja template (docs/serving.md#chat-templates)"},
};

cli_group_t cli_chat_template_group(const char **choice) {
    return (cli_group_t){NULL, CHAT_TEMPLATE_OPTIONS, 1, choice, 0};
}

chat_template_t *cli_chat_template_load(const char *cmd, const char *model_dir, const char *choice, spex_err_t *err) {
    chat_template_t *t = chat_template_load(model_dir, choice, err);
    if (!t) return NULL;
    spex_log("%s: chat format: %s", cmd, chat_template_describe(t));
    return t;
}
