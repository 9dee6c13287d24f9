/* cmd_chat_template.c - `spex chat-template`: render a JSON message list with
 * a model's chat format, exactly as `spex serve` would before tokenizing.
 *
 *   spex chat-template [--model DIR] [--chat-template auto|builtin|FILE]
 *                      [--messages FILE] [--no-generation-prompt] [--lines] [--check]
 *
 * The prompt goes to stdout as is (no newline added). With --lines every
 * input line is a message list and every output line the JSON string of its
 * prompt, or {"error": "..."}: many renders for one start-up (the jinja2
 * comparison test renders hundreds). --check only compiles
 * the template and says which format is used: the startup check of `spex
 * serve`, without loading a model. Errors name the unsupported construct with
 * its line:column (exit 1). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_chat_template.h"
#include "cli/cli_util.h"
#include "cli/commands.h"
#include "core/file.h"
#include "server/json_str.h"

typedef struct tmpl_cli {
    const char *dir, *choice, *messages;
    bool no_gen, check, lines;
} tmpl_cli_t;

static const cli_option_t TMPL_OPTIONS[] = {
    CLI_OPT_STRING("--model", "DIR", tmpl_cli_t, dir, "model directory (its chat_template.jinja or\ntokenizer_config.json, and its special tokens)"),
    CLI_OPT_STRING("--messages", "FILE", tmpl_cli_t, messages, "a JSON array of messages (default: stdin)"),
    CLI_OPT_FLAG("--no-generation-prompt", tmpl_cli_t, no_gen, "add_generation_prompt = false (default: true,\nas serve does)"),
    CLI_OPT_FLAG("--lines", tmpl_cli_t, lines, "one message list per input line; one JSON string\n(or {\"error\": ...}) per output line"),
    CLI_OPT_FLAG("--check", tmpl_cli_t, check, "only compile the template and print which format is\nused"),
};

static char *read_messages(const char *path, size_t *len, spex_err_t *err) {
    if (path) return spex_read_file(path, 64u << 20, len, err);
    strbuf_t b = {0};
    char buf[65536];
    size_t n;
    sb_str(&b, "");
    while ((n = fread(buf, 1, sizeof buf, stdin)) > 0) sb_add(&b, buf, n);
    char *text = sb_take(&b, len);
    if (!text) spex_fail(err, "out of memory reading stdin");
    return text;
}

/* One message list text -> its prompt (malloc'ed), or NULL with err. */
static char *render_one(const tmpl_cli_t *c, const chat_template_t *t, const char *text, size_t len, size_t *out_len,
                        spex_err_t *err) {
    const char *why = NULL;
    size_t at = 0;
    cJSON *msgs = json_parse_doc(text, len, &why, &at);
    if (!msgs) { spex_fail(err, "messages: %s at byte %zu", why, at); return NULL; }
    char *out = chat_template_render_json(t, msgs, json_str_len, !c->no_gen, out_len, err);
    cJSON_Delete(msgs);
    return out;
}

/* --lines: every non-empty line rendered, one JSON line out each. */
static int render_lines(const tmpl_cli_t *c, const chat_template_t *t, char *text, size_t len) {
    strbuf_t b = {0};
    for (size_t at = 0; at < len;) {
        char *nl = memchr(text + at, '\n', len - at);
        size_t end = nl ? (size_t)(nl - text) : len, out_len = 0;
        if (end > at) {
            spex_err_t err = {0};
            char *out = render_one(c, t, text + at, end - at, &out_len, &err);
            sb_reset(&b);
            if (out) sb_json_str(&b, out, out_len);
            else { sb_str(&b, "{\"error\": "); sb_json_cstr(&b, err.msg); sb_str(&b, "}"); }
            sb_str(&b, "\n");
            fwrite(b.p, 1, b.n, stdout);
            free(out);
        }
        at = end + 1;
    }
    sb_free(&b);
    return 0;
}

static int render(const tmpl_cli_t *c, const chat_template_t *t, spex_err_t *err) {
    size_t len = 0, out_len = 0;
    char *text = read_messages(c->messages, &len, err);
    if (!text) return -1;
    char *out = NULL;
    if (c->lines) render_lines(c, t, text, len);
    else out = render_one(c, t, text, len, &out_len, err);
    free(text);
    if (!c->lines && !out) return spex_err_prefix(err, "%s: ", c->messages ? c->messages : "stdin");
    if (out) fwrite(out, 1, out_len, stdout);
    free(out);
    return fflush(stdout) ? spex_fail(err, "cannot write stdout") : 0;
}

int cmd_chat_template(int argc, char **argv) {
    tmpl_cli_t c = {0};
    cli_group_t groups[] = {CLI_GROUP(NULL, TMPL_OPTIONS, &c), cli_chat_template_group(&c.choice)};
    cli_spec_t spec = CLI_SPEC("chat-template", "chat-template [--model DIR] [--chat-template auto|builtin|FILE] [--messages FILE]",
                               "Prints the prompt a JSON message list renders to, as serve and batch build it.\n"
                               "Documentation: docs/serving.md#chat-templates", groups);
    int rc = cli_run_parse(&spec, argc, argv, 1);
    if (rc >= 0) return rc;
    if (!c.dir && (!c.choice || !strcmp(c.choice, "auto")))
        return cli_usage_error(&spec, "give --model DIR or --chat-template builtin|FILE");
    spex_err_t err = {0};
    chat_template_t *t = chat_template_load(c.dir, c.choice, &err);
    if (!t) { cli_error("chat-template", "%s", err.msg); return 1; }
    if (c.check) {
        printf("%s\n", chat_template_describe(t));
        chat_template_free(t);
        return 0;
    }
    rc = render(&c, t, &err) ? 1 : 0;
    if (rc) cli_error("chat-template", "%s", err.msg);
    chat_template_free(t);
    return rc;
}
