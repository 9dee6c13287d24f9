/* signals.h - SIGTERM / SIGINT as a stop flag, for `spex serve` and `spex batch`.
 *
 * The handler only stores the signal number into a caller-owned
 * `volatile sig_atomic_t` (the one async-signal-safe thing to do); the engine
 * loop polls the flag between steps and while idle (every 100 ms), so no lock
 * or condition variable is touched from signal context. The flag's address is
 * kept in a static because a signal handler has no user pointer: that static
 * is the program's only global mutable state, written once at install time.
 * A second SIGINT (Ctrl-C twice) kills the process the default way; repeated
 * SIGTERMs only repeat the request to stop (schedulers may send several).
 * SIGPIPE is ignored: a client that vanishes shows up as a write error. */
#ifndef SPEX_SIGNALS_H
#define SPEX_SIGNALS_H

#include <signal.h>

/* Install handlers for SIGTERM and SIGINT that set *flag to the signal number. */
void stop_signals_install(volatile sig_atomic_t *flag);

#endif
