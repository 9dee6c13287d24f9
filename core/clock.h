/* clock.h - the monotonic clock every timing in Spex reads (seconds as a
 * double; only differences are meaningful), and the conversions a timed wait
 * on a condition variable needs so that it waits on the same clock. */
#ifndef SPEX_CLOCK_H
#define SPEX_CLOCK_H

#include <pthread.h>
#include <time.h>

double spex_now(void);

/* The spex_now() time t as an absolute timespec on the same clock, for
 * pthread_cond_timedwait on a condition made by spex_cond_init. */
struct timespec spex_timespec(double t);

/* A condition variable whose timed waits use the spex_now() clock; 0 or -1. */
int spex_cond_init(pthread_cond_t *cv);

#endif
