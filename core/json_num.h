/* json_num.h - integers read from cJSON numbers without undefined behaviour.
 * cJSON holds every number as a double; `(int)v->valuedouble` is undefined
 * for a value outside int's range (1e300, -1e10), which the fuzzers of
 * tests/fuzz/ reached in placement files. Check the range, then convert. */
#ifndef SPEX_JSON_NUM_H
#define SPEX_JSON_NUM_H

#include <stdbool.h>

struct cJSON;

/* true and *out = the value when v is a number holding an integer in [lo, hi]. */
bool json_int_in(const struct cJSON *v, int lo, int hi, int *out);

#endif
