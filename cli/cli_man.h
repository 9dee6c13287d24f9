/* cli_man.h - the man page and the bash completion script of `spex`, both
 * generated from the option tables (cli_opts.h) by way of each command's
 * --help, which is itself printed from those tables: `spex help-man` prints
 * groff (installed as share/man/man1/spex.1), `spex help-completion` a bash
 * completion script (share/bash-completion/completions/spex). Both are hidden
 * commands run at build time (CMakeLists.txt), so the page and the script
 * can never disagree with the binary. */
#ifndef SPEX_CLI_MAN_H
#define SPEX_CLI_MAN_H

#include <stddef.h>
#include <stdio.h>

#include "cli/commands.h"

/* Each command's --help, captured from a child process (fork + pipe), so the
 * commands run exactly as from a shell. */
int cli_man_page(const spex_command_t *cmds, size_t n, FILE *out);
int cli_bash_completion(const spex_command_t *cmds, size_t n, FILE *out);

#endif
