/* signals.c - see signals.h. */
#include "signals.h"

#include <stddef.h>
#include <string.h>

static volatile sig_atomic_t *stop_flag;   /* see signals.h: set once, read in the handler */

static void on_stop_signal(int sig) {
    if (sig == SIGINT && stop_flag && *stop_flag) {   /* second Ctrl-C: stop waiting */
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    if (stop_flag) *stop_flag = sig;
}

void stop_signals_install(volatile sig_atomic_t *flag) {
    stop_flag = flag;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}
