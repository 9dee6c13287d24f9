/* cli_opts.h - the one command-line option parser of `spex`: every option is
 * described once, in a constant table (name, alias, type, range or choices,
 * where the value goes, help text), and both the parsing and the --help text
 * come from that table.
 *
 * A table holds offsets, not pointers, so it can be `static const` and shared:
 * a group pairs a table with the struct its offsets point into, and a command
 * parses a list of groups (its own options, the shared sampling options
 * below, the expert-parallel ones of cli_ep.h). Values:
 *   CLI_FLAG   bool          --json (no value)
 *   CLI_INT    long          decimal, inside [min, max]
 *   CLI_DOUBLE double        inside [dmin, dmax]
 *   CLI_STRING const char *  any text (a `check` function may refuse it)
 *   CLI_ENUM   int           index of the value in `choices` ("sampled|argmax")
 *   CLI_LIST   cli_list_t    comma-separated integers, each inside [min, max]
 * Accepted forms: `--opt value` and `--opt=value`; `--help` / `-h` anywhere
 * prints the help. Unknown options, missing values, bad or out-of-range
 * numbers and unknown choices are errors naming the option; the command then
 * exits 2 (usage error). A default is whatever the struct holds before
 * parsing; the help shows it unless it lies outside the option's range
 * (e.g. -1 = "decided at run time", explained in the help text). */
#ifndef SPEX_CLI_OPTS_H
#define SPEX_CLI_OPTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

typedef enum cli_type { CLI_FLAG, CLI_INT, CLI_DOUBLE, CLI_STRING, CLI_ENUM, CLI_LIST } cli_type_t;

#define CLI_LIST_MAX 16
typedef struct cli_list {
    long v[CLI_LIST_MAX];
    int n;
} cli_list_t;

/* Extra check of a string value: 0 ok, else -1 with the reason in msg (the
 * parser puts the option's name in front). */
typedef int (*cli_check_fn)(const char *value, char *msg, size_t msg_len);

#define CLI_REQUIRED 1u   /* CLI_STRING only (NULL = not given): the command cannot run without it */

typedef struct cli_option {
    const char *name;      /* "--top-k" (or "-n" when there is no long form) */
    const char *alias;     /* "-n" for --max-tokens, or NULL */
    cli_type_t type;
    const char *meta;      /* placeholder of the value in the help: "N", "FILE" */
    size_t off;            /* where the value goes: offset in the group's struct */
    long min, max;         /* CLI_INT, CLI_LIST elements */
    double dmin, dmax;     /* CLI_DOUBLE */
    const char *choices;   /* CLI_ENUM: "a|b|c" */
    cli_check_fn check;    /* CLI_STRING: optional */
    unsigned flags;
    const char *help;      /* one line; '\n' continues it on the next, indented */
} cli_option_t;

/* A table and the struct it fills; `title` heads its part of the help (NULL:
 * none); `mask` (bit i = entry i) selects some entries, 0 = all. */
typedef struct cli_group {
    const char *title;
    const cli_option_t *opts;
    size_t n;
    void *base;
    unsigned mask;
} cli_group_t;

#define CLI_GROUP(title, table, base) {title, table, sizeof(table) / sizeof((table)[0]), base, 0}

/* What a command parses: its name for messages ("bench spec"), the usage
 * synopsis ("generate --model DIR (--prompt TEXT | --tokens IDS) [options]"),
 * a text printed after it (or NULL), and its groups. */
typedef struct cli_spec {
    const char *cmd, *usage, *about;
    const cli_group_t *groups;
    size_t n_groups;
} cli_spec_t;

#define CLI_SPEC(cmd, usage, about, groups) {cmd, usage, about, groups, sizeof(groups) / sizeof((groups)[0])}

/* Table entries. T is the struct, f its field; the field's C type is checked. */
#define CLI_TYPED_(T, f, ctype) (offsetof(T, f) + 0 * sizeof(_Generic(((T *)0)->f, ctype: 1)))
#define CLI_OPT_FLAG(nm, T, f, hlp) {.name = nm, .type = CLI_FLAG, .off = CLI_TYPED_(T, f, bool), .help = hlp}
#define CLI_OPT_INT(nm, al, mt, T, f, lo, hi, hlp) \
    {.name = nm, .alias = al, .type = CLI_INT, .meta = mt, .off = CLI_TYPED_(T, f, long), .min = lo, .max = hi, .help = hlp}
#define CLI_OPT_DOUBLE(nm, mt, T, f, lo, hi, hlp) \
    {.name = nm, .type = CLI_DOUBLE, .meta = mt, .off = CLI_TYPED_(T, f, double), .dmin = lo, .dmax = hi, .help = hlp}
#define CLI_OPT_STRING(nm, mt, T, f, hlp) \
    {.name = nm, .type = CLI_STRING, .meta = mt, .off = CLI_TYPED_(T, f, const char *), .help = hlp}
#define CLI_OPT_NEEDED(nm, mt, T, f, hlp) \
    {.name = nm, .type = CLI_STRING, .meta = mt, .off = CLI_TYPED_(T, f, const char *), .flags = CLI_REQUIRED, .help = hlp}
#define CLI_OPT_CHECKED(nm, mt, T, f, fn, hlp) \
    {.name = nm, .type = CLI_STRING, .meta = mt, .off = CLI_TYPED_(T, f, const char *), .check = fn, .help = hlp}
#define CLI_OPT_ENUM(nm, mt, T, f, ch, hlp) \
    {.name = nm, .type = CLI_ENUM, .meta = mt, .off = CLI_TYPED_(T, f, int), .choices = ch, .help = hlp}
#define CLI_OPT_LIST(nm, mt, T, f, lo, hi, hlp) \
    {.name = nm, .type = CLI_LIST, .meta = mt, .off = CLI_TYPED_(T, f, cli_list_t), .min = lo, .max = hi, .help = hlp}

enum { CLI_OK = 0, CLI_HELP = 1, CLI_BAD = -1 };

/* Parse argv[first..argc-1]. CLI_OK: values stored; CLI_HELP: --help seen
 * (nothing stored); CLI_BAD: msg says which option and why (nothing stored
 * is guaranteed only up to the bad option). */
int cli_parse(const cli_spec_t *spec, int argc, char **argv, int first, char *msg, size_t msg_len);

/* Like cli_parse but for a process that reads only some of a command's
 * options (an expert worker rank): arguments the groups do not know are
 * skipped, and --help is ignored. CLI_OK or CLI_BAD. */
int cli_parse_known(const cli_spec_t *spec, int argc, char **argv, int first, char *msg, size_t msg_len);

/* The help: "usage: spex <usage>", the about text, then one line per option. */
void cli_help(const cli_spec_t *spec, FILE *f);

/* The front end of every command: parse; on --help print the help to stdout,
 * on an error print "spex <cmd>: <msg>" and a usage hint to stderr. Returns
 * -1 to go on, or the exit status to return now (0 after --help, 2). */
int cli_run_parse(const cli_spec_t *spec, int argc, char **argv, int first);

/* A usage error found after parsing (a missing combination of options):
 * "spex <cmd>: <msg>" and the usage hint on stderr; returns 2. */
int cli_usage_error(const cli_spec_t *spec, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- the shared sampling group: speculation and sampling of `generate`,
 * `bench spec`, `serve` and `batch` (each picks the entries it takes). */
typedef struct cli_sampling {
    double temperature, top_p;
    long top_k, seed, spec_k;
    int draft;   /* CLI_DRAFT_SAMPLED or CLI_DRAFT_ARGMAX */
    double draft_min_p;
    long spec_step_rows;   /* seq_params_t.spec_step_rows */
} cli_sampling_t;

enum { CLI_DRAFT_SAMPLED = 0, CLI_DRAFT_ARGMAX = 1 };
enum { CLI_S_TEMPERATURE = 1u << 0, CLI_S_TOP_P = 1u << 1, CLI_S_TOP_K = 1u << 2, CLI_S_SEED = 1u << 3,
       CLI_S_SPEC_K = 1u << 4, CLI_S_DRAFT = 1u << 5, CLI_S_DRAFT_MIN_P = 1u << 6,
       CLI_S_SPEC_STEP_ROWS = 1u << 7 };

/* Greedy, no speculation, sampled drafts. */
cli_sampling_t cli_sampling_defaults(void);
/* The group over `s` with the entries in `mask` (CLI_S_*, 0 = all). */
cli_group_t cli_sampling_group(cli_sampling_t *s, unsigned mask);
/* The engine's parameters of one sequence from `s` (max_new_tokens 0, no EOS). */
struct seq_params cli_sampling_seq(const cli_sampling_t *s);

/* The temperature of HTTP API requests (`spex batch` lines without one, `spex
 * bench serve` requests): 0..2, as server/api.c accepts; a group over `t`. */
cli_group_t cli_request_temperature_group(double *t);

/* The limits of the continuous-batching scheduler (`serve`, `batch`):
 * --max-running, --max-prompt-tokens, --max-tokens-limit, --kv-capacity-tokens,
 * --prefix-cache-mb, --no-prefix-cache;
 * 0 = the scheduler's default (from the context length). */
typedef struct cli_sched {
    long max_running, max_prompt, max_tokens_limit, kv_capacity;
    long prefix_cache_mb;     /* 0: the default, 256 */
    bool no_prefix_cache;
} cli_sched_t;

/* The prefix cache budget in bytes these options ask for (0: off). */
size_t cli_sched_prefix_bytes(const cli_sched_t *s);

cli_group_t cli_sched_group(cli_sched_t *s);

/* --model DIR (required), the checkpoint every model command reads; a group over `dir`. */
cli_group_t cli_model_group(const char **dir);

#endif
