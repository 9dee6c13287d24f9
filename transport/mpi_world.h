/* mpi_world.h - whether this process is one rank of an MPI job, and MPI's
 * start and end.
 *
 * MPI is initialised only when a launcher started the process (mpirun / srun
 * set OMPI_COMM_WORLD_SIZE, PMIX_RANK, PMI_RANK or PMI_SIZE); a plain `spex ...`
 * never touches MPI and runs as world size 1. */
#ifndef SPEX_MPI_WORLD_H
#define SPEX_MPI_WORLD_H

#include <stdbool.h>

#include "core/error.h"

/* True when a launcher's environment variables are present. */
bool mpi_world_launched(void);

/* MPI_Init (errors are returned, MPI_ERRORS_RETURN on the world). */
int mpi_world_init(int *argc, char ***argv, int *rank, int *size, spex_err_t *err);

/* Size of MPI_COMM_WORLD, 1 when MPI was not initialised. */
int mpi_world_size(void);

void mpi_world_finalize(void);

/* Kill every rank of the job (after the error has been reported). */
void mpi_world_abort(int code);

#endif
