/* body_gate.h - bounds the memory request bodies can amplify into. A body is
 * at most --max-body-bytes, but its cJSON tree is up to ~80 bytes per value:
 * a 1 MiB body holding "pad":[0,0,...] becomes a ~40 MB tree. With one thread
 * per connection, 64 such bodies parsed at once took RSS from 78 MB to 1.2 GB,
 * higher on each round, never returned (issue 16 item 3).
 *
 * The gate lets at most `slots` request bodies be parsed (tree built,
 * validated, freed) at a time; the others wait their turn, holding only their
 * body. After a large body (>= BODY_GATE_TRIM_BYTES) is parsed or freed, the
 * heap's free pages are given back to the system (malloc_trim), since glibc
 * keeps per-thread arenas and raises its mmap threshold after the first large
 * free. So RSS stays within bodies x connections + slots x tree, and returns
 * to the baseline after a burst. Thread-safe. */
#ifndef SPEX_BODY_GATE_H
#define SPEX_BODY_GATE_H

#include <stddef.h>

#define BODY_GATE_TRIM_BYTES ((size_t)256 << 10)

typedef struct body_gate body_gate_t;

body_gate_t *body_gate_create(unsigned slots);   /* NULL when out of memory; slots >= 1 */
void body_gate_free(body_gate_t *g);
/* Wait for a parse slot. */
void body_gate_enter(body_gate_t *g);
/* Give the slot back; bytes is the size of the body that was parsed. */
void body_gate_leave(body_gate_t *g, size_t bytes);
/* A body of `bytes` capacity was freed: trim when it was large. */
void body_gate_released(size_t bytes);
/* Parses in progress (for tests and metrics). */
unsigned body_gate_busy(body_gate_t *g);

#endif
