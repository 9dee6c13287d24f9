/* log.c - see log.h. The rank comes from the environment that mpirun/srun set,
 * so logging needs no global state and no MPI call. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

void spex_log(const char *fmt, ...) {
    const char *rank = getenv("OMPI_COMM_WORLD_RANK");
    if (!rank) rank = getenv("PMIX_RANK");
    if (!rank) rank = getenv("SLURM_PROCID");
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (rank) fprintf(stderr, "spex[rank %s]: %s\n", rank, line);
    else fprintf(stderr, "spex: %s\n", line);
}
