/* json_num.c - see json_num.h. */
#include "json_num.h"

#include <cjson/cJSON.h>
#include <math.h>

bool json_int_in(const cJSON *v, int lo, int hi, int *out) {
    if (!cJSON_IsNumber(v)) return false;
    double d = v->valuedouble;
    if (!(d >= lo && d <= hi) || d != floor(d)) return false;   /* NaN fails the first test */
    *out = (int)d;
    return true;
}
