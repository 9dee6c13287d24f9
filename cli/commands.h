/* commands.h - the `spex` subcommands. Each lives in its own cli/cmd_*.c file,
 * takes (argc, argv) with argv[0] = subcommand name, and returns the process
 * exit code (0 ok, 1 runtime error, 2 usage error). */
#ifndef SPEX_CLI_COMMANDS_H
#define SPEX_CLI_COMMANDS_H

typedef int (*spex_cmd_fn)(int argc, char **argv);

typedef struct spex_command {
    const char *name;
    spex_cmd_fn fn;
    const char *summary;
    const char *subcommands;   /* "spec|ep|serve" for bench (each has its own --help), else NULL */
} spex_command_t;

int cmd_inspect(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_detokenize(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_perplexity(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_batch(int argc, char **argv);
int cmd_placement(int argc, char **argv);
int cmd_bench_ep(int argc, char **argv);
int cmd_bench_scale(int argc, char **argv);
int cmd_chat_template(int argc, char **argv);

#endif
