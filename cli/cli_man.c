/* cli_man.c - see cli_man.h. The help layout it reads is cli_help's
 * (cli_opts.c): "usage: spex ...", the about text, "Title:" lines heading
 * groups, option lines "  -a, --opt META" padded to column 28 followed by the
 * help, continuation lines indented 28 columns. */
#include "cli_man.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/strbuf.h"

enum { HELP_COL = 28 };

/* ------------------------------------------------------------ capturing --help */

/* stdout of `spex NAME [SUB] --help`, run as fn in a child; malloc'ed, NULL on failure. */
static char *capture_help(spex_cmd_fn fn, const char *name, const char *sub) {
    int p[2];
    fflush(stdout);
    if (pipe(p)) return NULL;
    pid_t pid = fork();
    if (pid < 0) { close(p[0]); close(p[1]); return NULL; }
    if (pid == 0) {
        close(p[0]);
        dup2(p[1], STDOUT_FILENO);
        char *args[] = {(char *)name, (char *)(sub ? sub : "--help"), sub ? "--help" : NULL, NULL};
        int rc = fn(sub ? 3 : 2, args);
        fflush(stdout);
        _exit(rc);
    }
    close(p[1]);
    strbuf_t b = {0};
    char buf[4096];
    for (ssize_t k; (k = read(p[0], buf, sizeof buf)) > 0;) sb_add(&b, buf, (size_t)k);
    close(p[0]);
    int st;
    waitpid(pid, &st, 0);
    sb_str(&b, "");
    return sb_take(&b, NULL);
}

/* ------------------------------------------------------------ one help line */

typedef enum line_kind { L_BLANK, L_USAGE, L_TITLE, L_OPTION, L_MORE, L_TEXT } line_kind_t;

static line_kind_t kind_of(const char *l) {
    size_t n = strlen(l), sp = strspn(l, " ");
    if (sp == n) return L_BLANK;
    if (!strncmp(l, "usage: ", 7)) return L_USAGE;
    if (sp >= HELP_COL) return L_MORE;
    if (sp == 2 && l[2] == '-') return L_OPTION;
    if (sp == 0 && l[n - 1] == ':' && !strchr(l, '.')) return L_TITLE;
    return L_TEXT;
}

/* An option line's head ("-n, --max-tokens N") and help (may be empty). */
static void split_option(const char *l, char *head, size_t hlen, const char **help) {
    size_t n = strlen(l);
    bool split = n > HELP_COL && l[HELP_COL - 1] == ' ' && l[HELP_COL] != ' ';
    size_t end = split ? HELP_COL : n;
    while (end > 2 && l[end - 1] == ' ') end--;
    snprintf(head, hlen, "%.*s", (int)(end - 2), l + 2);
    *help = split ? l + HELP_COL : "";
}

/* ------------------------------------------------------------ groff */

/* Text escaped for groff: backslashes, '-' as \-, a leading '.' or '\''. */
static void roff_text(FILE *out, const char *s) {
    while (*s == ' ') s++;
    if (*s == '.' || *s == '\'') fputs("\\&", out);
    for (; *s; s++) {
        if (*s == '\\') fputs("\\e", out);
        else if (*s == '-') fputs("\\-", out);
        else fputc(*s, out);
    }
    fputc('\n', out);
}

static void roff_line(FILE *out, const char *l) {
    char head[256];
    const char *help;
    switch (kind_of(l)) {
    case L_BLANK: break;
    case L_USAGE: fputs(".PP\n.B ", out); roff_text(out, l + 7); fputs(".br\n", out); break;
    case L_TITLE: fputs(".PP\n.I ", out); roff_text(out, l); break;
    case L_OPTION:
        split_option(l, head, sizeof head, &help);
        fputs(".TP\n.B ", out);
        roff_text(out, head);
        if (*help) roff_text(out, help);
        break;
    case L_MORE:
    case L_TEXT: roff_text(out, l); break;
    }
}

static void roff_help(FILE *out, const char *title, const char *help) {
    fputs(".SS \"", out);
    for (const char *s = title; *s; s++) fputs(*s == '-' ? "\\-" : (char[2]){*s, 0}, out);
    fputs("\"\n", out);
    char *copy = strdup(help);
    for (char *save, *l = copy ? strtok_r(copy, "\n", &save) : NULL; l; l = strtok_r(NULL, "\n", &save))
        roff_line(out, l);
    free(copy);
}

static void roff_command(FILE *out, const spex_command_t *c) {
    char title[160], sub[64];
    if (!c->subcommands) {
        char *h = capture_help(c->fn, c->name, NULL);
        snprintf(title, sizeof title, "spex %s", c->name);
        if (h) roff_help(out, title, h);
        free(h);
        return;
    }
    for (const char *p = c->subcommands; p && *p;) {
        size_t len = strcspn(p, "|");
        snprintf(sub, sizeof sub, "%.*s", (int)len, p);
        snprintf(title, sizeof title, "spex %s %s", c->name, sub);
        char *h = capture_help(c->fn, c->name, sub);
        if (h) roff_help(out, title, h);
        free(h);
        p = p[len] ? p + len + 1 : NULL;
    }
}

int cli_man_page(const spex_command_t *cmds, size_t n, FILE *out) {
    fputs(".TH SPEX 1 \"\" \"spex 0.1.0\" \"User Commands\"\n.SH NAME\n"
          "spex \\- DeepSeek\\-V3 Mixture\\-of\\-Experts inference on CPUs: generation, an OpenAI\\-compatible "
          "server, batch jobs, benchmarks\n.SH SYNOPSIS\n.B spex\n.I command\n[options]\n.br\n"
          ".B mpirun \\-np\n.I N\n.B spex\n.I command\n[options]\n.SH DESCRIPTION\n"
          "Every option takes \\fB\\-\\-opt value\\fR or \\fB\\-\\-opt=value\\fR. Exit status: 0 ok, 1 runtime "
          "error, 2 usage error.\n.SH COMMANDS\n", out);
    for (size_t i = 0; i < n; i++)
        if (cmds[i].fn) { fputs(".TP\n.B ", out); roff_text(out, cmds[i].name); roff_text(out, cmds[i].summary); }
    fputs(".SH OPTIONS\n", out);
    for (size_t i = 0; i < n; i++)
        if (cmds[i].fn) roff_command(out, &cmds[i]);
    fputs(".SH ENVIRONMENT\n.TP\n.B SPEX_API_KEY\nthe API key of \\fBspex serve\\fR when \\-\\-api\\-key is not "
          "given\n.SH SEE ALSO\n\\fBmpirun\\fR(1); the documentation under share/doc/spex "
          "(serving.md, expert\\-parallelism.md, cluster.md)\n", out);
    return fflush(out) ? 1 : 0;
}

/* ------------------------------------------------------------ bash completion */

/* The options of one help text, into opts ("--a --b"), and case arms for
 * their values into values ("--model) files;;" / choices). */
static void complete_options(const char *help, strbuf_t *opts, strbuf_t *values) {
    char *copy = strdup(help);
    for (char *save, *l = copy ? strtok_r(copy, "\n", &save) : NULL; l; l = strtok_r(NULL, "\n", &save)) {
        if (kind_of(l) != L_OPTION) continue;
        char head[256], name[128] = "", meta[128] = "";
        const char *help_text;
        split_option(l, head, sizeof head, &help_text);
        for (char *s2, *t = strtok_r(head, " ,", &s2); t; t = strtok_r(NULL, " ,", &s2)) {
            if (t[0] == '-') { sb_printf(opts, " %s", t); snprintf(name, sizeof name, "%s", t); }
            else snprintf(meta, sizeof meta, "%s", t);
        }
        if (!meta[0] || !name[0]) continue;
        bool is_path = strstr(meta, "FILE") || strstr(meta, "DIR") || strstr(meta, ".json") || strstr(meta, ".jsonl");
        bool is_choice = strchr(meta, '|') && !isupper((unsigned char)meta[0]);
        if (is_path) sb_printf(values, "        %s) COMPREPLY=($(compgen -f -- \"$cur\")); return;;\n", name);
        else if (is_choice) {
            for (char *q = meta; *q; q++) if (*q == '|') *q = ' ';
            sb_printf(values, "        %s) COMPREPLY=($(compgen -W \"%s\" -- \"$cur\")); return;;\n", name, meta);
        } else sb_printf(values, "        %s) return;;\n", name);
    }
    free(copy);
}

static void complete_arm(FILE *out, const char *pattern, const char *help) {
    strbuf_t opts = {0}, values = {0};
    sb_str(&opts, "");
    sb_str(&values, "");
    complete_options(help, &opts, &values);
    fprintf(out, "    %s)\n      case \"$prev\" in\n%s      esac\n      opts=\"%s --help\";;\n", pattern, values.p,
            opts.p);
    sb_free(&opts);
    sb_free(&values);
}

int cli_bash_completion(const spex_command_t *cmds, size_t n, FILE *out) {
    fputs("# bash completion for spex, generated by `spex help-completion` from its option tables\n"
          "_spex() {\n  local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]} opts=\n"
          "  if [ \"$COMP_CWORD\" -eq 1 ]; then\n    COMPREPLY=($(compgen -W \"", out);
    for (size_t i = 0; i < n; i++) fprintf(out, "%s%s", i ? " " : "", cmds[i].name);
    fputs("\" -- \"$cur\"))\n    return\n  fi\n  case \"${COMP_WORDS[1]} ${COMP_WORDS[2]}\" in\n", out);
    for (size_t i = 0; i < n; i++) {
        if (!cmds[i].fn) continue;
        char pattern[128];
        for (const char *p = cmds[i].subcommands; p && *p;) {
            size_t len = strcspn(p, "|");
            char sub[64];
            snprintf(sub, sizeof sub, "%.*s", (int)len, p);
            snprintf(pattern, sizeof pattern, "\"%s %s\"", cmds[i].name, sub);
            char *h = capture_help(cmds[i].fn, cmds[i].name, sub);
            if (h) complete_arm(out, pattern, h);
            free(h);
            p = p[len] ? p + len + 1 : NULL;
        }
        if (cmds[i].subcommands) {
            fprintf(out, "    \"%s \"*)\n      opts=\"", cmds[i].name);
            for (const char *p = cmds[i].subcommands; *p; p++) fputc(*p == '|' ? ' ' : *p, out);
            fputs("\";;\n", out);
            continue;
        }
        snprintf(pattern, sizeof pattern, "\"%s \"*", cmds[i].name);
        char *h = capture_help(cmds[i].fn, cmds[i].name, NULL);
        if (h) complete_arm(out, pattern, h);
        free(h);
    }
    fputs("  esac\n  COMPREPLY=($(compgen -W \"$opts\" -- \"$cur\"))\n}\ncomplete -o default -F _spex spex\n", out);
    return fflush(out) ? 1 : 0;
}
