/* bench_serve.h - `spex bench serve`, the HTTP load generator (cli/cmd_bench_serve.c),
 * reached through `spex bench` (cli/cmd_bench.c). */
#ifndef SPEX_CLI_BENCH_SERVE_H
#define SPEX_CLI_BENCH_SERVE_H

/* argv[0] = "bench", argv[1] = "serve"; returns the exit code. */
int bench_serve(int argc, char **argv);

#endif
