/* test_cli_opts.c - cli/cli_opts: the table-driven option parser. Good values
 * of every type, the --opt=value form, aliases, unknown options, missing
 * values, out-of-range and malformed numbers, enums and lists, required
 * options (one table of refusals, each naming the option and why), nothing
 * stored before --help, the lenient parse of worker ranks,
 * and the help generated from the table (every option listed, defaults shown). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_opts.h"

typedef struct opts {
    const char *model, *codec;
    long n;
    double grace;
    bool json;
    int mode;
    cli_list_t ranks;
} opts_t;

static int no_zstd(const char *v, char *msg, size_t len) {
    if (!strstr(v, "zstd")) return 0;
    snprintf(msg, len, "no zstd here, got '%s'", v);
    return -1;
}

static const cli_option_t OPTS[] = {
    CLI_OPT_NEEDED("--model", "DIR", opts_t, model, "the model"),
    CLI_OPT_INT("--max-tokens", "-n", "N", opts_t, n, 0, 100, "tokens"),
    CLI_OPT_DOUBLE("--grace", "S", opts_t, grace, 0, 10, "seconds"),
    CLI_OPT_FLAG("--json", opts_t, json, "JSON out"),
    CLI_OPT_ENUM("--mode", "MODE", opts_t, mode, "expert|presum|other", "combine mode"),
    CLI_OPT_LIST("--ranks", "R,R", opts_t, ranks, 1, 8, "worker counts"),
    CLI_OPT_CHECKED("--codec", "SPEC", opts_t, codec, no_zstd, "codec"),
};

typedef struct fixture {
    opts_t o;
    cli_sampling_t s;
    cli_group_t groups[2];
    cli_spec_t spec;
    char msg[256];
} fixture_t;

static void setup(fixture_t *f) {
    memset(f, 0, sizeof *f);
    f->o = (opts_t){.n = 7, .grace = 2.5, .mode = -1, .ranks = {{1, 2}, 2}};
    f->s = cli_sampling_defaults();
    f->groups[0] = (cli_group_t)CLI_GROUP(NULL, OPTS, &f->o);
    f->groups[1] = cli_sampling_group(&f->s, CLI_S_TEMPERATURE | CLI_S_DRAFT);
    f->spec = (cli_spec_t){"test", "test --model DIR [options]", "a test command", f->groups, 2};
}

static int parse(fixture_t *f, int argc, char **argv) {
    return cli_parse(&f->spec, argc, argv, 1, f->msg, sizeof f->msg);
}

#define ARGS(...) (char *[]){"test", __VA_ARGS__}
#define NARGS(...) (int)(sizeof((char *[]){"test", __VA_ARGS__}) / sizeof(char *))
#define PARSE(f, ...) parse(f, NARGS(__VA_ARGS__), ARGS(__VA_ARGS__))
Test(cli_opts, good_values_of_every_type) {
    fixture_t f;
    setup(&f);
    cr_assert_eq(PARSE(&f, "--model", "m", "--max-tokens", "42", "--grace", "0.5", "--json", "--mode", "presum",
                       "--ranks", "3,1,8", "--temperature", "0.8", "--draft", "argmax", "--codec", "fp8"),
                 CLI_OK, "%s", f.msg);
    cr_assert_str_eq(f.o.model, "m");
    cr_assert_eq(f.o.n, 42);
    cr_assert_float_eq(f.o.grace, 0.5, 1e-12);
    cr_assert(f.o.json);
    cr_assert_eq(f.o.mode, 1);
    cr_assert_eq(f.o.ranks.n, 3);
    cr_assert(f.o.ranks.v[0] == 3 && f.o.ranks.v[1] == 1 && f.o.ranks.v[2] == 8);
    cr_assert_float_eq(f.s.temperature, 0.8, 1e-12);
    cr_assert_eq(f.s.draft, CLI_DRAFT_ARGMAX);
    cr_assert_str_eq(f.o.codec, "fp8");
}

Test(cli_opts, defaults_stay_when_not_given) {
    fixture_t f;
    setup(&f);
    cr_assert_eq(PARSE(&f, "--model", "m"), CLI_OK, "%s", f.msg);
    cr_assert_eq(f.o.n, 7);
    cr_assert_float_eq(f.o.grace, 2.5, 1e-12);
    cr_assert(!f.o.json);
    cr_assert_eq(f.o.mode, -1);
    cr_assert_eq(f.s.draft, CLI_DRAFT_SAMPLED);
}

Test(cli_opts, equals_form_alias_and_last_wins) {
    fixture_t f;
    setup(&f);
    cr_assert_eq(PARSE(&f, "--model=dir=x", "-n", "3", "--max-tokens=9", "--grace=1", "--mode=other"), CLI_OK, "%s", f.msg);
    cr_assert_str_eq(f.o.model, "dir=x");
    cr_assert_eq(f.o.n, 9);
    cr_assert_float_eq(f.o.grace, 1.0, 1e-12);
    cr_assert_eq(f.o.mode, 2);
}

/* Arguments the parser must refuse, and what the message must say (the option and why). */
typedef struct refusal {
    const char *what, *want;
    char *args[8];   /* after "test"; NULL-terminated */
} refusal_t;

static const refusal_t REFUSALS[] = {
    {"unknown option", "unknown option '--bogus'", {"--model", "m", "--bogus"}},
    {"stray argument", "unknown option 'stray'", {"--model", "m", "stray"}},
    {"entry the mask leaves out", "unknown option '--top-k'", {"--model", "m", "--top-k", "3"}},
    {"missing value", "option --grace needs a value", {"--model", "m", "--grace"}},
    {"flag with a value", "--json takes no value", {"--model", "m", "--json=yes"}},
    {"int out of range", "--max-tokens: expected an integer in [0, 100], got '101'", {"--model", "m", "-n", "101"}},
    {"double out of range", "--grace: expected a number in [0, 10], got '10.5'", {"--model", "m", "--grace", "10.5"}},
    {"NaN", "--grace: expected a number in [0, 10], got 'nan'", {"--model", "m", "--grace", "nan"}},
    {"negative number as a value", "--temperature: expected a number in [0, 100], got '-1'",
     {"--model", "m", "--temperature", "-1"}},
    {"list element out of range", "--ranks: expected an integer in [1, 8], got '9'", {"--model", "m", "--ranks", "1,9"}},
    {"empty int", "--max-tokens", {"--model", "m", "-n", ""}},
    {"letters", "--max-tokens", {"--model", "m", "-n", "x"}},
    {"fraction as int", "--max-tokens", {"--model", "m", "-n", "1.5"}},
    {"trailing garbage", "--max-tokens", {"--model", "m", "-n", "3x"}},
    {"exponent as int", "--max-tokens", {"--model", "m", "-n", "1e2"}},
    {"int overflow", "--max-tokens", {"--model", "m", "-n", "99999999999999999999999"}},
    {"two dots", "--grace", {"--model", "m", "--grace", "1.2.3"}},
    {"bad list element", "--ranks", {"--model", "m", "--ranks", "1,,x"}},
    {"empty list", "--ranks: expected comma-separated integers, got ','", {"--model", "m", "--ranks", ","}},
    {"list too long", "--ranks: at most 16 values", {"--model", "m", "--ranks", "1,2,3,4,5,6,7,8,1,2,3,4,5,6,7,8,1"}},
    {"enum of three", "--mode: expected expert, presum or other, got 'sum'", {"--model", "m", "--mode", "sum"}},
    {"enum of two", "--draft: expected sampled or argmax, got 'greedy'", {"--model", "m", "--draft", "greedy"}},
    {"check function", "--codec: no zstd here, got 'fp8+zstd'", {"--model", "m", "--codec", "fp8+zstd"}},
    {"required option", "--model DIR is required", {"--json"}},
};

Test(cli_opts, refusals_name_the_option_and_why) {
    for (size_t k = 0; k < sizeof REFUSALS / sizeof REFUSALS[0]; k++) {
        const refusal_t *r = &REFUSALS[k];
        char *argv[9] = {"test"};
        int argc;
        for (argc = 1; r->args[argc - 1]; argc++) argv[argc] = r->args[argc - 1];
        fixture_t f;
        setup(&f);
        cr_assert_eq(parse(&f, argc, argv), CLI_BAD, "%s: accepted", r->what);
        cr_assert(strstr(f.msg, r->want), "%s: '%s' not in '%s'", r->what, r->want, f.msg);
    }
}

Test(cli_opts, enum_stores_the_index) {
    fixture_t f;
    setup(&f);
    cr_assert_eq(PARSE(&f, "--model", "m", "--mode", "expert"), CLI_OK, "%s", f.msg);
    cr_assert_eq(f.o.mode, 0);
}

Test(cli_opts, help_stores_nothing_and_errors_first_win) {
    fixture_t f;
    setup(&f);
    cr_assert_eq(PARSE(&f, "-n", "5", "--help"), CLI_HELP);
    cr_assert_eq(f.o.n, 7, "a value was stored before --help");
    cr_assert_eq(PARSE(&f, "-h"), CLI_HELP, "no required-option error before --help");
    cr_assert_eq(PARSE(&f, "--bogus", "--help"), CLI_BAD);
}

Test(cli_opts, known_only_skips_the_rest) {
    fixture_t f;
    setup(&f);
    char **argv = ARGS("--prompt", "hi", "--max-tokens=4", "--stats", "f", "--help", "--grace", "3");
    cr_assert_eq(cli_parse_known(&f.spec, 9, argv, 1, f.msg, sizeof f.msg), CLI_OK, "%s", f.msg);
    cr_assert_eq(f.o.n, 4);
    cr_assert_float_eq(f.o.grace, 3.0, 1e-12);
    argv = ARGS("--other", "--grace", "-2");
    cr_assert_eq(cli_parse_known(&f.spec, 4, argv, 1, f.msg, sizeof f.msg), CLI_BAD);
    cr_assert(strstr(f.msg, "--grace"), "%s", f.msg);
}

Test(cli_opts, help_lists_every_option_with_defaults) {
    fixture_t f;
    setup(&f);
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    cli_help(&f.spec, mem);
    fclose(mem);
    cr_assert(strstr(text, "usage: spex test --model DIR [options]\na test command\n"), "%s", text);
    for (size_t i = 0; i < sizeof OPTS / sizeof OPTS[0]; i++)
        cr_assert(strstr(text, OPTS[i].name), "%s missing from:\n%s", OPTS[i].name, text);
    cr_assert(strstr(text, "-n, --max-tokens N"), "%s", text);
    cr_assert(strstr(text, "(default 7)") && strstr(text, "(default 2.5)") && strstr(text, "(default 1,2)"), "%s", text);
    cr_assert(strstr(text, "(default sampled)"), "%s", text);
    cr_assert(strstr(text, "the model (required)"), "%s", text);
    cr_assert(!strstr(text, "(default -1)"), "an out-of-range default (decided later) is not shown:\n%s", text);
    cr_assert(strstr(text, "sampling and speculation:\n"), "%s", text);
    cr_assert(strstr(text, "--temperature T") && strstr(text, "--draft MODE"), "%s", text);
    cr_assert(!strstr(text, "--top-k") && !strstr(text, "--spec-k"), "masked-out entries listed:\n%s", text);
    cr_assert(strstr(text, "--help"), "%s", text);
    free(text);
}
