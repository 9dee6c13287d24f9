/* clock.h - the monotonic clock every timing in Spex reads (seconds as a
 * double; only differences are meaningful). */
#ifndef SPEX_CLOCK_H
#define SPEX_CLOCK_H

double spex_now(void);

#endif
