/* link_ranks.c - link_format_ranks() (link.h): the one way a list of ranks is
 * written into a message ("rank 1, 3 did not ..."), for the links and for both
 * sides of the protocol. */
#include "link.h"

#include <stdio.h>

const char *link_format_ranks(int world, bool (*in)(const void *user, int rank), const void *user, char *out,
                              size_t cap) {
    size_t off = 0;
    if (cap == 0) return out;
    out[0] = 0;
    for (int r = 0; r < world; r++) {
        if (!in(user, r)) continue;
        if (off + 16 > cap) {   /* room left for ", ..." only */
            if (off + 6 <= cap) snprintf(out + off, cap - off, ", ...");
            break;
        }
        off += (size_t)snprintf(out + off, cap - off, "%s%d", off ? ", " : "", r);
    }
    return out;
}
