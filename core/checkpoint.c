/* checkpoint.c - see checkpoint.h. */
#include "checkpoint.h"

#include <stdio.h>

int checkpoint_config(const char *dir, spex_config_t *cfg, spex_err_t *err) {
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/config.json", dir) >= sizeof path)
        return spex_fail(err, "model directory path too long: '%.64s...'", dir);
    return config_load(cfg, path, err);
}

tensor_store_t *checkpoint_open(const char *dir, spex_config_t *cfg, spex_err_t *err) {
    if (checkpoint_config(dir, cfg, err)) return NULL;
    return tensor_store_open(dir, cfg->fp8_block, err);   /* {0,0}: the store's 128x128 default */
}
