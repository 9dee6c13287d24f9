/* fuzz_safetensors.c - libFuzzer harness for core/safetensors.c, the
 * checkpoint reader: two surfaces chosen by the input's first byte.
 *   '{'  the input is a model.safetensors.index.json beside two valid shards
 *        (a.safetensors, b.safetensors, written once): tensor_store_open() of
 *        the directory (weight_map, file names kept inside the directory,
 *        every listed tensor in the file named).
 *   else the input is a whole .safetensors file: tensor_store_open_file()
 *        (8-byte header length, JSON header: dtypes, shapes, offsets inside
 *        the data and not overlapping, __metadata__).
 * On an accepted store every tensor is read back (pread and the f32 loader,
 * FP8 with its scales) and looked up by name. Seeds:
 * tests/fuzz/corpus/safetensors/, dictionary tests/fuzz/dict/safetensors.dict. */
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "core/safetensors.h"
#include "core/safetensors_write.h"
#include "fuzz_util.h"

static const int fp8_block[2] = {2, 2};
static char *index_dir, *index_path, *single_path;

/* Two small shards for the index to refer to. */
static void write_shards(void) {
    const char *names[2][2] = {{"model.embed_tokens.weight", "model.norm.weight"},
                               {"lm_head.weight", "model.layers.0.mlp.experts.0.down_proj.weight"}};
    const char *files[2] = {"a.safetensors", "b.safetensors"};
    float data[16];
    for (int i = 0; i < 16; i++) data[i] = (float)i - 4.5f;
    for (int f = 0; f < 2; f++) {
        spex_err_t err = {{0}};
        st_writer_t *w = st_writer_create();
        int64_t shape[2] = {4, 4};
        if (!w || st_writer_add(w, names[f][0], DTYPE_F32, 2, shape, data, sizeof data, &err) ||
            st_writer_add(w, names[f][1], DTYPE_F32, 1, shape, data, 4 * sizeof(float), &err)) abort();
        char *p = fuzz_path(index_dir, files[f]);
        if (st_writer_write(w, p, &err)) abort();
        free(p);
        st_writer_free(w);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    index_dir = fuzz_path(fuzz_scratch_dir(), "index");
    if (mkdir(index_dir, 0700)) abort();
    index_path = fuzz_path(index_dir, "model.safetensors.index.json");
    single_path = fuzz_path(fuzz_scratch_dir(), "one.safetensors");
    write_shards();
    return 0;
}

static void read_back(const tensor_store_t *ts) {
    size_t n = tensor_store_count(ts);
    for (size_t i = 0; i < n; i++) {
        const st_tensor_t *t = tensor_store_at(ts, i);
        if (tensor_store_find(ts, t->name) != t) abort();
        if (t->nbytes > (1u << 20)) continue;
        spex_err_t err = {{0}};
        void *buf = malloc(t->nbytes ? t->nbytes : 1);
        if (!buf) abort();
        (void)tensor_store_read(ts, t, buf, &err);
        free(buf);
        if (t->numel > (1 << 18)) continue;
        float *f = tensor_store_load_f32_alloc(ts, t->name, t->ndim, t->shape, &err);
        free(f);
        if (t->dtype == DTYPE_F8_E4M3 && t->ndim == 2) free(tensor_store_fp8_scales(ts, t, &err));
    }
    (void)tensor_store_find(ts, "no.such.tensor");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    bool index = n && data[0] == '{';
    fuzz_write_file(index ? index_path : single_path, data, n);
    spex_err_t err = {{0}};
    tensor_store_t *ts = index ? tensor_store_open(index_dir, fp8_block, &err)
                               : tensor_store_open_file(single_path, fp8_block, &err);
    if (ts) read_back(ts);
    else if (!err.msg[0]) abort();
    tensor_store_free(ts);
    return 0;
}
