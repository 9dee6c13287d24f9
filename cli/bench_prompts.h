/* bench_prompts.h - the built-in prompts shared by `spex bench spec` and
 * `spex bench serve`: Austen openings, so that speculation is measured on the
 * kind of text the shipped model learned (acceptance depends on it). */
#ifndef SPEX_BENCH_PROMPTS_H
#define SPEX_BENCH_PROMPTS_H

extern const char *const BENCH_DEFAULT_PROMPTS[];
extern const int BENCH_N_DEFAULT_PROMPTS;

#endif
