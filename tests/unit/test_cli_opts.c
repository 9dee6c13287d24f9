/* test_cli_opts.c - cli/cli_opts: the table-driven option parser. Good values
 * of every type, the --opt=value form, aliases, unknown options, missing
 * values, out-of-range and malformed numbers, enums and lists, required
 * options, nothing stored before --help, the lenient parse of worker ranks,
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
/* The arguments are refused with a message containing `want`. */
#define EXPECT_BAD(f, want, ...)                                                     \
    do {                                                                             \
        cr_assert_eq(PARSE(f, __VA_ARGS__), CLI_BAD, "accepted: expected '%s'", want); \
        cr_assert(strstr((f)->msg, want), "'%s' not in: %s", want, (f)->msg);         \
    } while (0)

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

Test(cli_opts, negative_number_is_a_value_not_an_option) {
    fixture_t f;
    setup(&f);
    cr_assert_eq(PARSE(&f, "--model", "m", "--temperature", "-1"), CLI_BAD);
    cr_assert(strstr(f.msg, "--temperature") && strstr(f.msg, "'-1'"), "%s", f.msg);
}

Test(cli_opts, unknown_option) {
    fixture_t f;
    setup(&f);
    EXPECT_BAD(&f, "unknown option '--bogus'", "--model", "m", "--bogus");
    EXPECT_BAD(&f, "unknown option 'stray'", "--model", "m", "stray");
    cr_assert_eq(PARSE(&f, "--model", "m", "--top-k", "3"), CLI_BAD, "an entry the mask leaves out is unknown");
}

Test(cli_opts, missing_value) {
    fixture_t f;
    setup(&f);
    EXPECT_BAD(&f, "--grace needs a value", "--model", "m", "--grace");
}

Test(cli_opts, flag_with_a_value) {
    fixture_t f;
    setup(&f);
    EXPECT_BAD(&f, "--json takes no value", "--model", "m", "--json=yes");
}

Test(cli_opts, out_of_range) {
    fixture_t f;
    setup(&f);
    EXPECT_BAD(&f, "--max-tokens: expected an integer in [0, 100], got '101'", "--model", "m", "-n", "101");
    EXPECT_BAD(&f, "--grace: expected a number in [0, 10]", "--model", "m", "--grace", "10.5");
    cr_assert_eq(PARSE(&f, "--model", "m", "--ranks", "1,9"), CLI_BAD);
    cr_assert(strstr(f.msg, "--ranks") && strstr(f.msg, "'9'"), "%s", f.msg);
    cr_assert_eq(PARSE(&f, "--model", "m", "--grace", "nan"), CLI_BAD, "NaN is out of any range");
}

Test(cli_opts, bad_numbers) {
    fixture_t f;
    setup(&f);
    const char *bad_ints[] = {"", "x", "1.5", "3x", "1e2", "99999999999999999999999"};
    for (size_t i = 0; i < sizeof bad_ints / sizeof bad_ints[0]; i++) {
        cr_assert_eq(PARSE(&f, "--model", "m", "-n", (char *)bad_ints[i]), CLI_BAD, "'%s' accepted", bad_ints[i]);
        cr_assert(strstr(f.msg, "--max-tokens"), "%s", f.msg);
    }
    cr_assert_eq(PARSE(&f, "--model", "m", "--grace", "1.2.3"), CLI_BAD);
    cr_assert_eq(PARSE(&f, "--model", "m", "--ranks", "1,,x"), CLI_BAD);
    cr_assert_eq(PARSE(&f, "--model", "m", "--ranks", ","), CLI_BAD);
    EXPECT_BAD(&f, "at most 16", "--model", "m", "--ranks", "1,2,3,4,5,6,7,8,1,2,3,4,5,6,7,8,1");
}

Test(cli_opts, enum_choices) {
    fixture_t f;
    setup(&f);
    EXPECT_BAD(&f, "--mode: expected expert, presum or other, got 'sum'", "--model", "m", "--mode", "sum");
    EXPECT_BAD(&f, "--draft: expected sampled or argmax, got 'greedy'", "--model", "m", "--draft", "greedy");
    cr_assert_eq(PARSE(&f, "--model", "m", "--mode", "expert"), CLI_OK);
    cr_assert_eq(f.o.mode, 0);
}

Test(cli_opts, check_function) {
    fixture_t f;
    setup(&f);
    EXPECT_BAD(&f, "--codec: no zstd here, got 'fp8+zstd'", "--model", "m", "--codec", "fp8+zstd");
}

Test(cli_opts, required) {
    fixture_t f;
    setup(&f);
    EXPECT_BAD(&f, "--model DIR is required", "--json");
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
