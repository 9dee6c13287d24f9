/* bench_prompts.c - see bench_prompts.h. */
#include "bench_prompts.h"

const char *const BENCH_DEFAULT_PROMPTS[] = {
    "It is a truth universally acknowledged",
    "Mrs. Bennet was",
    "The family of Dashwood had long been settled in Sussex.",
    "Emma Woodhouse, handsome, clever, and rich,",
    "She was",
    "\"My dear Mr. Bennet,\" said his lady to him one day,",
    "Sir Walter Elliot, of Kellynch Hall,",
    "No one who had ever seen Catherine Morland in her infancy",
};
const int BENCH_N_DEFAULT_PROMPTS = (int)(sizeof BENCH_DEFAULT_PROMPTS / sizeof BENCH_DEFAULT_PROMPTS[0]);
