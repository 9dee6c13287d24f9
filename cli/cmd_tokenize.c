/* cmd_tokenize.c - `spex tokenize` and `spex detokenize`: line-by-line filters
 * between JSON and token ids, for checking the tokenizer against Hugging Face
 * and for scripting.
 *
 *   spex tokenize --model DIR|tokenizer.json [--bos]
 *       stdin: one JSON string per line; stdout: one compact JSON id array per line.
 *   spex detokenize --model DIR|tokenizer.json [--skip-special]
 *       stdin: one JSON id array per line; stdout: one JSON string per line.
 *
 * Output is flushed line by line so the commands work as coprocesses. The
 * first bad line stops the run with its line number on stderr and exit 1;
 * nothing is printed for that line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli/cli_opts.h"
#include "cli/cli_util.h"
#include "core/strbuf.h"
#include "server/json_str.h"
#include "cli/commands.h"
#include "coordinator/tokenizer/tokenizer.h"
#include "server/json_str.h"

typedef struct tok_cli {
    const char *cmd;   /* "tokenize" or "detokenize" */
    const char *model;
    bool flag;         /* --bos for tokenize, --skip-special for detokenize */
} tok_cli_t;

static const cli_option_t TOKENIZE_OPTIONS[] = {
    CLI_OPT_NEEDED("--model", "DIR|tokenizer.json", tok_cli_t, model, "the tokenizer"),
    CLI_OPT_FLAG("--bos", tok_cli_t, flag, "prepend the BOS token (tokenizer_config.json's\nbos_token)"),
};

static const cli_option_t DETOKENIZE_OPTIONS[] = {
    CLI_OPT_NEEDED("--model", "DIR|tokenizer.json", tok_cli_t, model, "the tokenizer"),
    CLI_OPT_FLAG("--skip-special", tok_cli_t, flag, "leave out special tokens (BOS, EOS, ...)"),
};

/* Returns -1 to continue, or the exit code to return right away. */
static int parse_args(int argc, char **argv, tok_cli_t *c) {
    bool tokenize = !strcmp(c->cmd, "tokenize");
    cli_group_t g = tokenize ? (cli_group_t)CLI_GROUP(NULL, TOKENIZE_OPTIONS, c)
                             : (cli_group_t)CLI_GROUP(NULL, DETOKENIZE_OPTIONS, c);
    cli_spec_t spec = {c->cmd, tokenize ? "tokenize --model DIR|tokenizer.json [--bos]"
                                        : "detokenize --model DIR|tokenizer.json [--skip-special]",
                       tokenize ? "Reads one JSON string per line on stdin, prints one JSON array of token ids per line."
                                : "Reads one JSON array of token ids per line on stdin, prints one JSON string per line.",
                       &g, 1};
    return cli_run_parse(&spec, argc, argv, 1);
}

/* Parse a whole line (NUL-terminated at len) as one JSON value; trailing
 * garbage after the value is an error, not ignored. */
static cJSON *parse_line(const char *line, size_t len) {
    return cJSON_ParseWithLengthOpts(line, len + 1, NULL, 1);
}

/* One line of tokenize: JSON string -> printed id array. The string keeps
 * its length: "\u0000" and raw NUL bytes are encoded like any other
 * character, as Hugging Face tokenizers does (issue 16 item 4). */
static int tokenize_line(const tokenizer_t *tok, bool bos, const char *line, size_t len, spex_err_t *err) {
    const char *why = NULL;
    size_t at = 0;
    cJSON *j = json_parse_doc(line, len, &why, &at);
    int rc = 0;
    if (!j) rc = spex_fail(err, "%s near byte %zu (unterminated string, bad escape or lone \\ud800-style surrogate?)",
                           why, at);
    else if (!cJSON_IsString(j)) rc = spex_fail(err, "expected a JSON string");
    int32_t *ids = NULL;
    size_t n = 0;
    if (!rc) rc = tokenizer_encode(tok, j->valuestring, json_str_len(j), bos, &ids, &n, err);
    if (!rc) {
        cli_print_ids(stdout, ids, (int)n);
        fputc('\n', stdout);
    }
    free(ids);
    cJSON_Delete(j);
    return rc;
}

/* Ids of a JSON array of integers; *ids malloc'ed. */
static int parse_id_array(const char *line, size_t len, int32_t **ids, size_t *n, spex_err_t *err) {
    cJSON *j = parse_line(line, len), *it;
    *ids = NULL;
    *n = 0;
    if (!cJSON_IsArray(j)) {
        cJSON_Delete(j);
        return spex_fail(err, "expected a JSON array of token ids");
    }
    size_t cnt = (size_t)cJSON_GetArraySize(j), i = 0;
    *ids = malloc((cnt ? cnt : 1) * sizeof **ids);
    int rc = *ids ? 0 : spex_fail(err, "out of memory");
    cJSON_ArrayForEach(it, j) {
        if (rc) break;
        double v = it->valuedouble;
        if (!cJSON_IsNumber(it) || !(v >= INT32_MIN && v <= INT32_MAX) || v != (double)(int32_t)v) rc = spex_fail(err, "element %zu is not an integer id", i);
        else (*ids)[i++] = (int32_t)v;
    }
    cJSON_Delete(j);
    if (rc) {
        free(*ids);
        *ids = NULL;
        return -1;
    }
    *n = cnt;
    return 0;
}

static int detokenize_line(const tokenizer_t *tok, bool skip, const char *line, size_t len, spex_err_t *err) {
    int32_t *ids;
    size_t n, out_len;
    if (parse_id_array(line, len, &ids, &n, err)) return -1;
    char *text = tokenizer_decode(tok, ids, n, skip, &out_len, err);
    free(ids);
    if (!text) return -1;
    /* as cJSON_PrintUnformatted writes it (bytes >= 0x80 as is), plus NUL as \u0000 */
    strbuf_t b = {0};
    json_str_spell(&b, text, out_len);
    free(text);
    if (b.oom) {
        sb_free(&b);
        return spex_fail(err, "out of memory");
    }
    fwrite(b.p, 1, b.n, stdout);
    fputc('\n', stdout);
    sb_free(&b);
    return 0;
}

/* Shared driver: load, then run `fn` on every stdin line. */
static int run(int argc, char **argv, int (*fn)(const tokenizer_t *, bool, const char *, size_t, spex_err_t *)) {
    tok_cli_t c = {.cmd = argv[0]};
    int code = parse_args(argc, argv, &c);
    if (code >= 0) return code;
    spex_err_t err = {{0}};
    tokenizer_t *tok = tokenizer_load(c.model, &err);
    if (!tok) {
        cli_error(c.cmd, "%s", err.msg);
        return 1;
    }
    char *line = NULL;
    size_t cap = 0, lineno = 0;
    ssize_t len;
    code = 0;
    while ((len = getline(&line, &cap, stdin)) >= 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
        if (fn(tok, c.flag, line, (size_t)len, &err)) {
            fflush(stdout);
            cli_error(c.cmd, "stdin line %zu: %s", lineno, err.msg);
            code = 1;
            break;
        }
        fflush(stdout);
    }
    free(line);
    tokenizer_free(tok);
    return code;
}

int cmd_tokenize(int argc, char **argv) { return run(argc, argv, tokenize_line); }
int cmd_detokenize(int argc, char **argv) { return run(argc, argv, detokenize_line); }
