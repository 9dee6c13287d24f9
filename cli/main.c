/* main.c - entry point of the `spex` binary: picks the subcommand, and under
 * mpirun the role by rank (cli_ep_main: rank 0 runs the subcommand, the other
 * ranks serve experts). This is the one place that knows every front end. */
#include <stdio.h>
#include <string.h>

#include "cli/cli_ep.h"
#include "cli/cli_man.h"
#include "cli/commands.h"

static const spex_command_t COMMANDS[] = {
    /* One line per subcommand: name, entry point (NULL: handled by run()), summary for `spex help`. */
    {"help", NULL, "this list", NULL},
    {"inspect", cmd_inspect, "print a checkpoint's config, tensors, parameter counts and bytes by dtype", NULL},
    {"synth", cmd_synth, "write a random DeepSeek-V3-architecture checkpoint (any config, any dtype)", NULL},
    {"tokenize", cmd_tokenize, "JSON strings on stdin -> JSON id arrays on stdout", NULL},
    {"detokenize", cmd_detokenize, "JSON id arrays on stdin -> JSON strings on stdout", NULL},
    {"logits", cmd_logits, "print next-token logits for a token sequence as JSON (prefill, decode, MTP)", NULL},
    {"generate", cmd_generate, "generate text from a prompt", NULL},
    {"perplexity", cmd_perplexity, "perplexity and bits per byte of a text file", NULL},
    {"bench", cmd_bench, "benchmarks: `bench spec` (MTP speculation), `bench ep` (expert parallelism), `bench scale` (a scaling-study point), `bench serve` (HTTP load)",
     "spec|ep|scale|serve"},
    {"placement", cmd_placement, "print the expert -> rank table for a model and world size (docs/expert-parallelism.md)", NULL},
    {"serve", cmd_serve, "OpenAI-compatible HTTP server with continuous batching (docs/serving.md)", NULL},
    {"batch", cmd_batch, "resumable JSONL batch generation with continuous batching (docs/serving.md)", NULL},
    {"chat-template", cmd_chat_template, "render a JSON message list with a model's chat template (docs/serving.md)", NULL},
};

static void usage(FILE *out) {
    fprintf(out, "usage: spex <command> [options]   (spex <command> --help for its options)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        fprintf(out, "  %-12s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
}

static int run(int argc, char **argv) {
    if (argc < 2) { usage(stderr); return 2; }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) { printf("spex 0.1.0\n"); return 0; }
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        if (COMMANDS[i].fn && !strcmp(argv[1], COMMANDS[i].name)) return COMMANDS[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "spex: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}

int main(int argc, char **argv) {
    /* hidden, for the build (cli_man.h): before any MPI set-up, since they fork */
    size_t n = sizeof COMMANDS / sizeof COMMANDS[0];
    if (argc == 2 && !strcmp(argv[1], "help-man")) return cli_man_page(COMMANDS, n, stdout);
    if (argc == 2 && !strcmp(argv[1], "help-completion")) return cli_bash_completion(COMMANDS, n, stdout);
    return cli_ep_main(argc, argv, run);
}
