/* fuzz_config.c - libFuzzer harness for core/config.c: config_parse() of a
 * config.json (DeepSeek-V3 fields, MoE layout, MTP layers, quantization and
 * rope scaling), then the questions the loaders ask of a valid config. Any
 * input must give a config or an error message, never a crash, a leak or
 * undefined behaviour. Seeds: tests/fuzz/corpus/config/, dictionary
 * tests/fuzz/dict/config.dict. */
#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    char *json = fuzz_cstr(data, n);
    spex_config_t cfg;
    spex_err_t err = {{0}};
    if (config_parse(&cfg, json, "fuzz/config.json", &err) == 0) {
        int layers = cfg.num_hidden_layers + cfg.num_nextn_predict_layers;
        for (int l = 0; l < layers && l < 256; l++) (void)config_layer_is_moe(&cfg, l);
        (void)config_qk_head_dim(&cfg);
    } else if (!err.msg[0]) {
        abort();   /* an error must say what is wrong */
    }
    free(json);
    return 0;
}
