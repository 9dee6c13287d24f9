/* cli_opts.c - see cli_opts.h: the table-driven option parser, the help
 * generated from the same tables, and the shared sampling options. */
#include "cli_opts.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/decode/engine.h"

/* ------------------------------------------------------------ values */

static int parse_long(const char *s, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end) return -1;
    *out = v;
    return 0;
}

static int int_value(const cli_option_t *o, const char *v, long *out, char *msg, size_t len) {
    if (parse_long(v, out) == 0 && *out >= o->min && *out <= o->max) return 0;
    snprintf(msg, len, "%s: expected an integer in [%ld, %ld], got '%s'", o->name, o->min, o->max, v);
    return -1;
}

static int double_value(const cli_option_t *o, const char *v, double *out, char *msg, size_t len) {
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (!errno && end != v && !*end && d >= o->dmin && d <= o->dmax) { *out = d; return 0; }
    snprintf(msg, len, "%s: expected a number in [%g, %g], got '%s'", o->name, o->dmin, o->dmax, v);
    return -1;
}

/* Index of `v` in "a|b|c", or -1. */
static int choice_index(const char *choices, const char *v) {
    size_t n = strlen(v);
    int i = 0;
    for (const char *p = choices; p; i++) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && !strncmp(p, v, n)) return i;
        p = bar ? bar + 1 : NULL;
    }
    return -1;
}

/* "expected a, b or c, got 'v'" */
static void enum_error(const cli_option_t *o, const char *v, char *msg, size_t len) {
    int off = snprintf(msg, len, "%s: expected ", o->name);
    for (const char *p = o->choices; p && off >= 0 && (size_t)off < len;) {
        const char *bar = strchr(p, '|');
        int n = bar ? (int)(bar - p) : (int)strlen(p);
        const char *sep = !bar ? "" : strchr(bar + 1, '|') ? ", " : " or ";
        off += snprintf(msg + off, len - (size_t)off, "%.*s%s", n, p, sep);
        p = bar ? bar + 1 : NULL;
    }
    if (off >= 0 && (size_t)off < len) snprintf(msg + off, len - (size_t)off, ", got '%s'", v);
}

static int list_value(const cli_option_t *o, const char *v, cli_list_t *out, char *msg, size_t len) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s", v);
    out->n = 0;
    for (char *save, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (out->n == CLI_LIST_MAX) {
            snprintf(msg, len, "%s: at most %d values", o->name, CLI_LIST_MAX);
            return -1;
        }
        if (int_value(o, t, &out->v[out->n++], msg, len)) return -1;
    }
    if (out->n > 0) return 0;
    snprintf(msg, len, "%s: expected comma-separated integers, got '%s'", o->name, v);
    return -1;
}

/* The table's check function; its reason prefixed with the option's name. */
static int check_value(const cli_option_t *o, const char *v, char *msg, size_t len) {
    char why[384] = "";
    if (o->check(v, why, sizeof why) == 0) return 0;
    snprintf(msg, len, "%s: %s", o->name, why);
    return -1;
}

/* Check `v` for option `o` and, when `dst` is not NULL, store it there. */
static int take_value(const cli_option_t *o, const char *v, void *dst, char *msg, size_t len) {
    union { long l; double d; int i; cli_list_t list; const char *s; bool b; } x;
    size_t size = 0;
    int rc = 0;
    switch (o->type) {
    case CLI_INT: rc = int_value(o, v, &x.l, msg, len); size = sizeof x.l; break;
    case CLI_DOUBLE: rc = double_value(o, v, &x.d, msg, len); size = sizeof x.d; break;
    case CLI_LIST: rc = list_value(o, v, &x.list, msg, len); size = sizeof x.list; break;
    case CLI_STRING: rc = o->check ? check_value(o, v, msg, len) : 0; x.s = v; size = sizeof x.s; break;
    case CLI_FLAG: x.b = true; size = sizeof x.b; break;
    case CLI_ENUM:
        if ((x.i = choice_index(o->choices, v)) < 0) { enum_error(o, v, msg, len); return -1; }
        size = sizeof x.i;
        break;
    }
    if (rc == 0 && dst) memcpy(dst, &x, size);
    return rc;
}

/* ------------------------------------------------------------ lookup */

typedef struct found {
    const cli_option_t *opt;
    void *dst;
} found_t;

static bool selected(const cli_group_t *g, size_t i) { return !g->mask || (g->mask >> i & 1u); }

/* The option called `name` (its first `n` characters), or .opt NULL. */
static found_t lookup(const cli_spec_t *spec, const char *name, size_t n) {
    for (size_t g = 0; g < spec->n_groups; g++) {
        const cli_group_t *gr = &spec->groups[g];
        for (size_t i = 0; i < gr->n; i++) {
            const cli_option_t *o = &gr->opts[i];
            bool hit = (strlen(o->name) == n && !strncmp(o->name, name, n)) ||
                       (o->alias && strlen(o->alias) == n && !strncmp(o->alias, name, n));
            if (hit && selected(gr, i)) return (found_t){o, (char *)gr->base + o->off};
        }
    }
    return (found_t){NULL, NULL};
}

static bool is_help(const char *a) { return !strcmp(a, "--help") || !strcmp(a, "-h"); }

/* One argument (and its value) at argv[*i]: 0 taken, 1 unknown, -1 bad. */
static int one_arg(const cli_spec_t *spec, int argc, char **argv, int *i, bool store, char *msg, size_t len) {
    const char *a = argv[*i], *eq = strncmp(a, "--", 2) ? NULL : strchr(a, '=');
    size_t n = eq ? (size_t)(eq - a) : strlen(a);
    found_t f = lookup(spec, a, n);
    if (!f.opt) {
        snprintf(msg, len, "unknown option '%s'", a);
        return 1;
    }
    const char *v = eq ? eq + 1 : NULL;
    if (f.opt->type == CLI_FLAG) {
        if (v) { snprintf(msg, len, "%.*s takes no value", (int)n, a); return -1; }
    } else if (!v) {
        if (*i + 1 >= argc) { snprintf(msg, len, "option %s needs a value", f.opt->name); return -1; }
        v = argv[++*i];
    }
    return take_value(f.opt, v, store ? f.dst : NULL, msg, len);
}

/* Every required option given (CLI_REQUIRED is for CLI_STRING: NULL = not given)? */
static int check_required(const cli_spec_t *spec, char *msg, size_t len) {
    for (size_t g = 0; g < spec->n_groups; g++)
        for (size_t i = 0; i < spec->groups[g].n; i++) {
            const cli_option_t *o = &spec->groups[g].opts[i];
            if (!(o->flags & CLI_REQUIRED) || !selected(&spec->groups[g], i)) continue;
            if (*(const char **)((char *)spec->groups[g].base + o->off)) continue;
            snprintf(msg, len, "%s %s is required", o->name, o->meta ? o->meta : "VALUE");
            return -1;
        }
    return 0;
}

/* One pass over the arguments; `store` false only checks them. */
static int pass(const cli_spec_t *spec, int argc, char **argv, int first, bool store, bool known_only, char *msg,
                size_t len) {
    for (int i = first; i < argc; i++) {
        if (is_help(argv[i])) {
            if (known_only) continue;
            return CLI_HELP;
        }
        int r = one_arg(spec, argc, argv, &i, store, msg, len);
        if (r < 0 || (r > 0 && !known_only)) return CLI_BAD;
    }
    return CLI_OK;
}

int cli_parse(const cli_spec_t *spec, int argc, char **argv, int first, char *msg, size_t len) {
    int r = pass(spec, argc, argv, first, false, false, msg, len);   /* nothing stored before --help / an error */
    if (r != CLI_OK || (r = pass(spec, argc, argv, first, true, false, msg, len)) != CLI_OK) return r;
    return check_required(spec, msg, len) ? CLI_BAD : CLI_OK;
}

int cli_parse_known(const cli_spec_t *spec, int argc, char **argv, int first, char *msg, size_t len) {
    int r = pass(spec, argc, argv, first, false, true, msg, len);
    return r != CLI_OK ? r : pass(spec, argc, argv, first, true, true, msg, len);
}

/* ------------------------------------------------------------ help */

/* The i-th choice of "a|b|c" (up to its '|'), or NULL. */
static const char *nth_choice(const char *choices, int i) {
    const char *p = i >= 0 ? choices : NULL;
    while (p && i-- > 0) p = (p = strchr(p, '|')) ? p + 1 : NULL;
    return p;
}

/* " (default X)" for the value the option's destination holds now, if in range. */
static void default_text(const cli_option_t *o, const void *dst, char *out, size_t len) {
    out[0] = '\0';
    long l;
    double d;
    const cli_list_t *li;
    const char *p;
    switch (o->type) {
    case CLI_INT:
        if ((l = *(const long *)dst) >= o->min && l <= o->max) snprintf(out, len, " (default %ld)", l);
        break;
    case CLI_DOUBLE:
        if ((d = *(const double *)dst) >= o->dmin && d <= o->dmax) snprintf(out, len, " (default %g)", d);
        break;
    case CLI_STRING:
        if (*(const char *const *)dst) snprintf(out, len, " (default %s)", *(const char *const *)dst);
        break;
    case CLI_ENUM:
        if ((p = nth_choice(o->choices, *(const int *)dst)))
            snprintf(out, len, " (default %.*s)", (int)strcspn(p, "|"), p);
        break;
    case CLI_LIST:
        li = dst;
        for (int i = 0; i < li->n; i++) {
            size_t k = strlen(out);
            snprintf(out + k, len - k, "%s%ld", i ? "," : " (default ", li->v[i]);
        }
        if (li->n) snprintf(out + strlen(out), len - strlen(out), ")");
        break;
    case CLI_FLAG:
        break;
    }
}

enum { HELP_COLUMN = 28 };

static void option_help(const cli_option_t *o, const void *dst, FILE *f) {
    char head[128], def[128];
    const char *meta = o->type == CLI_FLAG ? "" : o->meta ? o->meta : o->type == CLI_ENUM ? o->choices : "VALUE";
    snprintf(head, sizeof head, "  %s%s%s%s%s", o->alias ? o->alias : "", o->alias ? ", " : "", o->name, *meta ? " " : "",
             meta);
    default_text(o, dst, def, sizeof def);
    int pad = HELP_COLUMN - (int)strlen(head);
    if (pad > 0) fprintf(f, "%s%*s", head, pad, "");
    else fprintf(f, "%s\n%*s", head, HELP_COLUMN, "");   /* a long head: the help on the next line */
    for (const char *p = o->help; *p; p++) {
        fputc(*p, f);
        if (*p == '\n') fprintf(f, "%*s", HELP_COLUMN, "");
    }
    fprintf(f, "%s%s\n", o->flags & CLI_REQUIRED ? " (required)" : "", def);
}

void cli_help(const cli_spec_t *spec, FILE *f) {
    fprintf(f, "usage: spex %s\n", spec->usage);
    if (spec->about) fprintf(f, "%s\n", spec->about);
    for (size_t g = 0; g < spec->n_groups; g++) {
        const cli_group_t *gr = &spec->groups[g];
        if (gr->title) fprintf(f, "\n%s:\n", gr->title);
        for (size_t i = 0; i < gr->n; i++)
            if (selected(gr, i)) option_help(&gr->opts[i], (const char *)gr->base + gr->opts[i].off, f);
    }
    fprintf(f, "  -h, --help%*sthis text\n", HELP_COLUMN - 12, "");
}

static void usage_hint(const cli_spec_t *spec) {
    fprintf(stderr, "usage: spex %s  (spex %s --help for the options)\n", spec->usage, spec->cmd);
}

int cli_usage_error(const cli_spec_t *spec, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "spex %s: ", spec->cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    usage_hint(spec);
    return 2;
}

int cli_run_parse(const cli_spec_t *spec, int argc, char **argv, int first) {
    char msg[512];
    int r = cli_parse(spec, argc, argv, first, msg, sizeof msg);
    if (r == CLI_OK) return -1;
    if (r == CLI_HELP) { cli_help(spec, stdout); return 0; }
    return cli_usage_error(spec, "%s", msg);
}

/* ------------------------------------------------------------ shared groups */

static const cli_option_t SAMPLING[] = {   /* bit i of a mask = entry i: keep in the order of CLI_S_* */
    CLI_OPT_DOUBLE("--temperature", "T", cli_sampling_t, temperature, 0, 100, "0 = greedy"),
    CLI_OPT_DOUBLE("--top-p", "P", cli_sampling_t, top_p, 1e-9, 1, "nucleus sampling: the smallest set of tokens\n"
                   "with probability >= P"),
    CLI_OPT_INT("--top-k", NULL, "K", cli_sampling_t, top_k, 0, 1 << 30, "sample among the K likeliest (0 = all)"),
    CLI_OPT_INT("--seed", NULL, "S", cli_sampling_t, seed, 0, INT64_MAX, "random seed of the sampler"),
    CLI_OPT_INT("--spec-k", NULL, "K", cli_sampling_t, spec_k, 0, SPEX_MAX_SPEC_K,
                "MTP speculative decoding: K drafts per verify step\n(0 = off)"),
    CLI_OPT_ENUM("--draft", "MODE", cli_sampling_t, draft, "sampled|argmax",
                 "temperature > 0: draft by sampling the MTP\ndistribution or take its argmax"),
    CLI_OPT_DOUBLE("--draft-min-p", "P", cli_sampling_t, draft_min_p, 0, 1,
                   "adaptive draft length: stop drafting after a\ndraft less likely than P (0 = always K)"),
    CLI_OPT_INT("--spec-step-rows", NULL, "N", cli_sampling_t, spec_step_rows, 0, 1 << 20,
                "with several sequences per step, draft at most\nN / sequences - 1 tokens each (0 = always K)"),
};

cli_sampling_t cli_sampling_defaults(void) {
    return (cli_sampling_t){.temperature = 0, .top_p = 1, .top_k = 0, .seed = 0, .spec_k = 0,
                            .draft = CLI_DRAFT_SAMPLED, .spec_step_rows = SPEX_SPEC_STEP_ROWS};
}

cli_group_t cli_sampling_group(cli_sampling_t *s, unsigned mask) {
    return (cli_group_t){"sampling and speculation", SAMPLING, sizeof SAMPLING / sizeof SAMPLING[0], s, mask};
}

seq_params_t cli_sampling_seq(const cli_sampling_t *s) {
    return (seq_params_t){.spec_k = (int)s->spec_k, .sampled_drafts = s->draft == CLI_DRAFT_SAMPLED,
                          .draft_min_p = (float)s->draft_min_p, .spec_step_rows = (int)s->spec_step_rows,
                          .sampling = {.temperature = (float)s->temperature, .top_k = (int)s->top_k,
                                       .top_p = (float)s->top_p, .seed = (uint64_t)s->seed}};
}

typedef struct request_temperature {
    double t;
} request_temperature_t;

static const cli_option_t REQUEST_TEMPERATURE[] = {
    CLI_OPT_DOUBLE("--temperature", "T", request_temperature_t, t, 0, 2,
                   "temperature of requests that do not set one\n(0..2, as the HTTP API)"),
};

cli_group_t cli_request_temperature_group(double *t) {
    return (cli_group_t){NULL, REQUEST_TEMPERATURE, 1, t, 0};
}

static const cli_option_t SCHED[] = {
    CLI_OPT_INT("--max-running", NULL, "N", cli_sched_t, max_running, 1, 4096, "sequences decoded together in one engine step"),
    CLI_OPT_INT("--max-prompt-tokens", NULL, "N", cli_sched_t, max_prompt, 1, 1L << 30,
                "longest prompt accepted (default: context - 1)"),
    CLI_OPT_INT("--max-tokens-limit", NULL, "N", cli_sched_t, max_tokens_limit, 1, 1L << 30,
                "largest max_tokens accepted (default: context - 1)"),
    CLI_OPT_INT("--kv-capacity-tokens", NULL, "N", cli_sched_t, kv_capacity, 1, 1L << 40,
                "sum of KV cache capacities over running sequences\n(default: max-running x context)"),
    CLI_OPT_INT("--prefix-cache-mb", NULL, "MB", cli_sched_t, prefix_cache_mb, 1, 1L << 30,
                "prompt prefix cache: KV rows of earlier prompts\nand answers, reused (default 256)"),
    CLI_OPT_FLAG("--no-prefix-cache", cli_sched_t, no_prefix_cache, "recompute every prompt from its first token"),
};

cli_group_t cli_sched_group(cli_sched_t *s) { return (cli_group_t)CLI_GROUP("scheduler", SCHED, s); }

size_t cli_sched_prefix_bytes(const cli_sched_t *s) {
    return s->no_prefix_cache ? 0 : (size_t)(s->prefix_cache_mb > 0 ? s->prefix_cache_mb : 256) << 20;
}

typedef struct model_dir {
    const char *dir;
} model_dir_t;

static const cli_option_t MODEL[] = {
    CLI_OPT_NEEDED("--model", "DIR", model_dir_t, dir, "checkpoint directory (config.json, *.safetensors,\n"
                   "tokenizer.json)"),
};

cli_group_t cli_model_group(const char **dir) { return (cli_group_t){NULL, MODEL, 1, dir, 0}; }
