/* eos_set.c - see eos_set.h. */
#include "eos_set.h"

int eos_set_add(eos_set_t *s, int32_t id) {
    if (id < 0 || eos_set_has(s, id)) return 0;
    if (s->n >= SPEX_MAX_EOS) return -1;
    s->id[s->n++] = id;
    return 0;
}

int eos_set_merge(eos_set_t *a, const eos_set_t *b) {
    for (int i = 0; i < b->n; i++)
        if (eos_set_add(a, b->id[i])) return -1;
    return 0;
}

bool eos_set_has(const eos_set_t *s, int32_t id) {
    for (int i = 0; i < s->n; i++)
        if (s->id[i] == id) return true;
    return false;
}
