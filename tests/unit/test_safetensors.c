/* test_safetensors.c - the safetensors reader and writer: golden checkpoints
 * load (FP8 dequantisation against a naive loop over the raw bytes), every
 * kind of corrupt file is rejected with a message naming the file and the
 * tensor, shards and index files, and the writer round-trips (buffered and
 * streaming). Corrupt files are written into a mkdtemp directory. */
#include <criterion/criterion.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/dtype.h"
#include "core/safetensors.h"
#include "core/safetensors_write.h"
#include "testutil.h"

static const int BLOCK[2] = {128, 128};

static char *golden_path(char *out, size_t cap, const char *fixture, const char *file) {
    char rel[256];
    snprintf(rel, sizeof rel, "golden/%s%s%s", fixture, file ? "/" : "", file ? file : "");
    test_data_path(out, cap, rel);
    return out;
}

/* ---- golden files ---- */

Test(safetensors, golden_f32_dir) {
    char dir[1024];
    spex_err_t err = {0};
    tensor_store_t *ts = tensor_store_open(golden_path(dir, sizeof dir, "tiny-f32", NULL), BLOCK, &err);
    cr_assert_not_null(ts, "%s", err.msg);
    /* 3 global + 3 main layers + 1 MTP layer: 14 + 2*(10+54) attention/MoE layers ... just count */
    cr_assert_gt(tensor_store_count(ts), 100);
    cr_assert_eq(tensor_store_file_count(ts), 1);
    for (size_t i = 1; i < tensor_store_count(ts); i++)
        cr_assert_lt(strcmp(tensor_store_at(ts, i - 1)->name, tensor_store_at(ts, i)->name), 0, "sorted");
    const st_tensor_t *t = tensor_store_find(ts, "lm_head.weight");
    cr_assert_not_null(t);
    cr_assert_eq(t->dtype, DTYPE_F32);
    cr_assert_eq(t->ndim, 2);
    cr_assert_eq(t->shape[0], 320);
    cr_assert_eq(t->shape[1], 128);
    int64_t shape[2] = {320, 128};
    float *w = tensor_store_load_f32_alloc(ts, "lm_head.weight", 2, shape, &err);
    cr_assert_not_null(w, "%s", err.msg);
    cr_assert_eq(memcmp(w, t->data, 320 * 128 * 4), 0);
    free(w);
    cr_assert_null(tensor_store_find(ts, "nope"));
    tensor_store_free(ts);
}

Test(safetensors, golden_bf16_matches_raw_bits) {
    char dir[1024];
    spex_err_t err = {0};
    tensor_store_t *ts = tensor_store_open(golden_path(dir, sizeof dir, "tiny-bf16-noq", NULL), NULL, &err);
    cr_assert_not_null(ts, "%s", err.msg);
    const char *name = "model.layers.0.self_attn.q_proj.weight";
    const st_tensor_t *t = tensor_store_find(ts, name);
    cr_assert_not_null(t);
    cr_assert_eq(t->dtype, DTYPE_BF16);
    int64_t shape[2] = {192, 128};
    float *w = tensor_store_load_f32_alloc(ts, name, 2, shape, &err);
    cr_assert_not_null(w, "%s", err.msg);
    for (int64_t i = 0; i < t->numel; i++) {
        uint32_t u = (uint32_t)(t->data[2 * i] | t->data[2 * i + 1] << 8) << 16;
        float f;
        memcpy(&f, &u, 4);
        cr_assert_eq(w[i], f);
    }
    free(w);
    tensor_store_free(ts);
}

/* Reference e4m3 decode, written from the format definition (not dtype.c). */
static double e4m3_naive(uint8_t b) {
    int s = b >> 7, e = (b >> 3) & 15, m = b & 7;
    double v = e == 0 ? m / 8.0 * pow(2, -6) : (1 + m / 8.0) * pow(2, e - 7);
    return s ? -v : v;
}

/* Read the raw bytes of `name` from a safetensors file with stdio + cJSON. */
static uint8_t *raw_tensor(const char *path, const char *name, int64_t shape[2]) {
    size_t len;
    char *buf = test_read_file(path, &len);
    cr_assert_not_null(buf);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | (uint8_t)buf[i];
    cJSON *h = cJSON_ParseWithLength(buf + 8, n);
    cJSON *e = cJSON_GetObjectItem(h, name);
    cr_assert_not_null(e, "%s not in %s", name, path);
    cJSON *off = cJSON_GetObjectItem(e, "data_offsets"), *sh = cJSON_GetObjectItem(e, "shape");
    size_t b = (size_t)cJSON_GetArrayItem(off, 0)->valuedouble, end = (size_t)cJSON_GetArrayItem(off, 1)->valuedouble;
    shape[0] = (int64_t)cJSON_GetArrayItem(sh, 0)->valuedouble;
    shape[1] = cJSON_GetArraySize(sh) > 1 ? (int64_t)cJSON_GetArrayItem(sh, 1)->valuedouble : 1;
    uint8_t *out = malloc(end - b);
    memcpy(out, buf + 8 + n + b, end - b);
    cJSON_Delete(h);
    free(buf);
    return out;
}

static void check_fp8(const char *name) {
    char path[1024], dir[1024];
    golden_path(path, sizeof path, "tiny-fp8", "model.safetensors");
    int64_t shape[2], sshape[2];
    uint8_t *q = raw_tensor(path, name, shape);
    char sname[256];
    snprintf(sname, sizeof sname, "%s_scale_inv", name);
    uint8_t *sraw = raw_tensor(path, sname, sshape);
    cr_assert_eq(sshape[0], (shape[0] + 127) / 128);
    cr_assert_eq(sshape[1], (shape[1] + 127) / 128);
    spex_err_t err = {0};
    tensor_store_t *ts = tensor_store_open(golden_path(dir, sizeof dir, "tiny-fp8", NULL), BLOCK, &err);
    cr_assert_not_null(ts, "%s", err.msg);
    float *w = tensor_store_load_f32_alloc(ts, name, 2, shape, &err);
    cr_assert_not_null(w, "%s", err.msg);
    for (int64_t r = 0; r < shape[0]; r++)
        for (int64_t c = 0; c < shape[1]; c++) {
            float s;
            memcpy(&s, sraw + 4 * ((r / 128) * sshape[1] + c / 128), 4);
            double want = e4m3_naive(q[r * shape[1] + c]) * (double)s;
            cr_assert_eq((double)w[r * shape[1] + c], (double)(float)want, "%s[%lld][%lld]", name, (long long)r,
                         (long long)c);
        }
    free(w);
    free(q);
    free(sraw);
    tensor_store_free(ts);
}

Test(safetensors, golden_fp8_dequant_matches_naive) {
    check_fp8("model.layers.0.mlp.down_proj.weight");     /* [128, 288]: partial column block */
    check_fp8("model.layers.0.mlp.gate_proj.weight");     /* [288, 128]: partial row block */
    check_fp8("model.layers.1.self_attn.kv_b_proj.weight");
}

Test(safetensors, golden_fp8_errors) {
    char dir[1024];
    spex_err_t err = {0};
    tensor_store_t *ts = tensor_store_open(golden_path(dir, sizeof dir, "tiny-fp8", NULL), BLOCK, &err);
    cr_assert_not_null(ts, "%s", err.msg);
    int64_t wrong[2] = {288, 128};
    float *w = tensor_store_load_f32_alloc(ts, "model.layers.0.mlp.down_proj.weight", 2, wrong, &err);
    cr_assert_null(w);
    cr_assert(strstr(err.msg, "tensor 'model.layers.0.mlp.down_proj.weight' in "), "%s", err.msg);
    cr_assert(strstr(err.msg, "model.safetensors has shape [128,288], expected [288,128]"), "%s", err.msg);
    w = tensor_store_load_f32_alloc(ts, "model.layers.0.mlp.nothing", 2, wrong, &err);
    cr_assert_null(w);
    cr_assert(strstr(err.msg, "missing tensor 'model.layers.0.mlp.nothing'"), "%s", err.msg);
    cr_assert(strstr(err.msg, "tiny-fp8"), "%s", err.msg);
    tensor_store_free(ts);
    /* a block size that disagrees with the scale shapes */
    int small[2] = {64, 64};
    ts = tensor_store_open(dir, small, &err);
    cr_assert_not_null(ts, "%s", err.msg);
    int64_t shape[2] = {128, 288};
    w = tensor_store_load_f32_alloc(ts, "model.layers.0.mlp.down_proj.weight", 2, shape, &err);
    cr_assert_null(w);
    cr_assert(strstr(err.msg, "down_proj.weight_scale_inv"), "%s", err.msg);
    cr_assert(strstr(err.msg, "expected [2,5]"), "%s", err.msg);
    tensor_store_free(ts);
}

/* ---- corrupt files ---- */

typedef struct { char dir[256]; } tmpdir_t;

static void tmp_make(tmpdir_t *t) {
    snprintf(t->dir, sizeof t->dir, "/tmp/spex-st-XXXXXX");
    cr_assert_not_null(mkdtemp(t->dir));
}

static void tmp_clean(tmpdir_t *t) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", t->dir);
    cr_assert_eq(system(cmd), 0);
}

/* Write dir/name: u64 header length, header text, `data_len` bytes of 0x3c. */
static void write_raw(const tmpdir_t *t, const char *name, uint64_t hlen_field, const char *header, size_t data_len) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", t->dir, name);
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)(hlen_field >> (8 * i));
    fwrite(len8, 1, 8, f);
    fwrite(header, 1, strlen(header), f);
    for (size_t i = 0; i < data_len; i++) fputc(0x3c, f);
    fclose(f);
}

static void write_st(const tmpdir_t *t, const char *name, const char *header, size_t data_len) {
    write_raw(t, name, strlen(header), header, data_len);
}

/* Opening dir/file must fail with every needle in the message. */
static void expect_open_error(const tmpdir_t *t, const char *file, const char *n1, const char *n2) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", t->dir, file);
    spex_err_t err = {0};
    tensor_store_t *ts = tensor_store_open_file(path, BLOCK, &err);
    cr_assert_null(ts, "%s should not open", file);
    cr_assert(strstr(err.msg, file), "file name '%s' not in: %s", file, err.msg);
    if (n1) cr_assert(strstr(err.msg, n1), "'%s' not in: %s", n1, err.msg);
    if (n2) cr_assert(strstr(err.msg, n2), "'%s' not in: %s", n2, err.msg);
    /* also through the directory entry point */
    ts = tensor_store_open(t->dir, BLOCK, &err);
    cr_assert_null(ts);
    cr_assert(strstr(err.msg, file), "dir open: file name not in: %s", err.msg);
}

#define ONE(dt, shape, b, e) "{\"w\":{\"dtype\":\"" dt "\",\"shape\":" shape ",\"data_offsets\":[" #b "," #e "]}}"

Test(safetensors_bad, truncated_and_header_length) {
    tmpdir_t t;
    tmp_make(&t);
    char path[512];
    snprintf(path, sizeof path, "%s/model.safetensors", t.dir);
    FILE *f = fopen(path, "wb");
    fwrite("\x10\0\0", 1, 3, f);
    fclose(f);
    expect_open_error(&t, "model.safetensors", "shorter than", NULL);
    write_raw(&t, "model.safetensors", 1000, "{}", 0);
    expect_open_error(&t, "model.safetensors", "header length 1000 past end of file", NULL);
    write_raw(&t, "model.safetensors", 0xffffffffffffull, "{}", 0);
    expect_open_error(&t, "model.safetensors", "past end", NULL);
    tmp_clean(&t);
}

Test(safetensors_bad, header_garbage_and_not_object) {
    tmpdir_t t;
    tmp_make(&t);
    write_st(&t, "model.safetensors", "{\"w\": {\"dtype\": \"F32\", ", 0);
    expect_open_error(&t, "model.safetensors", "not valid JSON", NULL);
    write_st(&t, "model.safetensors", "[1,2,3]", 0);
    expect_open_error(&t, "model.safetensors", "not a JSON object", NULL);
    write_st(&t, "model.safetensors", "{\"w\": 5}", 0);
    expect_open_error(&t, "model.safetensors", "tensor 'w'", "not an object");
    tmp_clean(&t);
}

Test(safetensors_bad, entry_fields) {
    tmpdir_t t;
    tmp_make(&t);
    write_st(&t, "model.safetensors", "{\"w\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8);
    expect_open_error(&t, "model.safetensors", "tensor 'w'", "dtype");
    write_st(&t, "model.safetensors", "{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", 8);
    expect_open_error(&t, "model.safetensors", "tensor 'w'", "shape");
    write_st(&t, "model.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8);
    expect_open_error(&t, "model.safetensors", "tensor 'w'", "data_offsets");
    write_st(&t, "model.safetensors", ONE("F4", "[2]", 0, 8), 8);
    expect_open_error(&t, "model.safetensors", "tensor 'w'", "unknown dtype 'F4'");
    write_st(&t, "model.safetensors", ONE("F32", "[-2]", 0, 8), 8);
    expect_open_error(&t, "model.safetensors", "tensor 'w'", "shape[0]");
    write_st(&t, "model.safetensors", ONE("F32", "[2]", 0, 80), 8);
    expect_open_error(&t, "model.safetensors", "tensor 'w'", "out of range");
    write_st(&t, "model.safetensors", ONE("F32", "[2]", 8, 0), 8);
    expect_open_error(&t, "model.safetensors", "tensor 'w'", "end before begin");
    write_st(&t, "model.safetensors", ONE("F32", "[3]", 0, 8), 8);
    expect_open_error(&t, "model.safetensors", "tensor 'w'", "needs 12");
    /* 2^32 x 2^32: refused before the element count overflows int64 (UBSan: issue 16 item 7) */
    write_st(&t, "model.safetensors", ONE("F32", "[4294967296,4294967296]", 0, 8), 8);
    expect_open_error(&t, "model.safetensors", "tensor 'w'", "shape too large");
    write_st(&t, "model.safetensors", ONE("U8", "[4294967296,4294967296,4294967296]", 0, 8), 8);
    expect_open_error(&t, "model.safetensors", "tensor 'w'", "shape too large");
    tmp_clean(&t);
}

Test(safetensors_bad, overlap_and_duplicates) {
    tmpdir_t t;
    tmp_make(&t);
    write_st(&t, "model.safetensors",
             "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
             "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12);
    expect_open_error(&t, "model.safetensors", "tensor 'b'", "overlap tensor 'a'");
    write_st(&t, "model.safetensors",
             "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
             "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 16);
    expect_open_error(&t, "model.safetensors", "tensor 'a'", "twice");
    /* the same entry twice: a duplicate, not an overlap of a tensor with itself */
    write_st(&t, "model.safetensors",
             "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
             "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8);
    expect_open_error(&t, "model.safetensors", "tensor 'a'", "appears twice in the header");
    tmp_clean(&t);
}

Test(safetensors_bad, shards_and_index) {
    tmpdir_t t;
    tmp_make(&t);
    char path[512];
    /* the same name in two shards (no index: every *.safetensors, sorted) */
    write_st(&t, "s-1.safetensors", ONE("F32", "[2]", 0, 8), 8);
    write_st(&t, "s-2.safetensors", ONE("F32", "[2]", 0, 8), 8);
    spex_err_t err = {0};
    tensor_store_t *ts = tensor_store_open(t.dir, BLOCK, &err);
    cr_assert_null(ts);
    cr_assert(strstr(err.msg, "tensor 'w'") && strstr(err.msg, "s-1.safetensors") &&
              strstr(err.msg, "s-2.safetensors"), "%s", err.msg);
    /* an index that lists a tensor its file does not hold */
    write_st(&t, "s-2.safetensors", "{\"v\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4);
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", t.dir);
    FILE *f = fopen(path, "w");
    fputs("{\"metadata\":{},\"weight_map\":{\"w\":\"s-1.safetensors\",\"v\":\"s-2.safetensors\","
          "\"u\":\"s-2.safetensors\"}}", f);
    fclose(f);
    ts = tensor_store_open(t.dir, BLOCK, &err);
    cr_assert_null(ts);
    cr_assert(strstr(err.msg, "tensor 'u'") && strstr(err.msg, "s-2.safetensors") &&
              strstr(err.msg, "model.safetensors.index.json"), "%s", err.msg);
    /* a good index: both shards load, found by name */
    f = fopen(path, "w");
    fputs("{\"weight_map\":{\"w\":\"s-1.safetensors\",\"v\":\"s-2.safetensors\"}}", f);
    fclose(f);
    ts = tensor_store_open(t.dir, BLOCK, &err);
    cr_assert_not_null(ts, "%s", err.msg);
    cr_assert_eq(tensor_store_file_count(ts), 2);
    cr_assert_eq(tensor_store_count(ts), 2);
    cr_assert(strstr(tensor_store_file_path(ts, tensor_store_find(ts, "v")->file), "s-2.safetensors"));
    tensor_store_free(ts);
    /* index pointing outside the directory */
    f = fopen(path, "w");
    fputs("{\"weight_map\":{\"w\":\"../evil.safetensors\"}}", f);
    fclose(f);
    ts = tensor_store_open(t.dir, BLOCK, &err);
    cr_assert_null(ts);
    cr_assert(strstr(err.msg, "tensor 'w'"), "%s", err.msg);
    /* empty directory */
    unlink(path);
    snprintf(path, sizeof path, "%s/s-1.safetensors", t.dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/s-2.safetensors", t.dir);
    unlink(path);
    ts = tensor_store_open(t.dir, BLOCK, &err);
    cr_assert_null(ts);
    cr_assert(strstr(err.msg, t.dir), "%s", err.msg);
    tmp_clean(&t);
}

Test(safetensors_bad, load_errors) {
    tmpdir_t t;
    tmp_make(&t);
    /* q: FP8 [2,4] without its scale; v: FP8 1-D; s: FP8 with a scale of the wrong shape; i: I64 */
    write_st(&t, "model.safetensors",
             "{\"q\":{\"dtype\":\"F8_E4M3\",\"shape\":[2,4],\"data_offsets\":[0,8]},"
             "\"v\":{\"dtype\":\"F8_E4M3\",\"shape\":[4],\"data_offsets\":[8,12]},"
             "\"s\":{\"dtype\":\"F8_E4M3\",\"shape\":[2,4],\"data_offsets\":[12,20]},"
             "\"s_scale_inv\":{\"dtype\":\"F32\",\"shape\":[2,1],\"data_offsets\":[20,28]},"
             "\"i\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[28,36]}}", 36);
    spex_err_t err = {0};
    tensor_store_t *ts = tensor_store_open(t.dir, BLOCK, &err);
    cr_assert_not_null(ts, "%s", err.msg);
    float buf[16];
    int64_t s24[2] = {2, 4}, s4[1] = {4}, s1[1] = {1}, s42[2] = {4, 2};
    cr_assert_eq(tensor_store_load_f32(ts, "q", 2, s24, buf, &err), -1);
    cr_assert(strstr(err.msg, "model.safetensors") && strstr(err.msg, "'q_scale_inv' is missing"), "%s", err.msg);
    cr_assert_eq(tensor_store_load_f32(ts, "v", 1, s4, buf, &err), -1);
    cr_assert(strstr(err.msg, "model.safetensors") && strstr(err.msg, "tensor 'v'"), "%s", err.msg);
    cr_assert_eq(tensor_store_load_f32(ts, "s", 2, s24, buf, &err), -1);
    cr_assert(strstr(err.msg, "tensor 's_scale_inv' in ") && strstr(err.msg, "expected [1,1]"), "%s", err.msg);
    cr_assert_eq(tensor_store_load_f32(ts, "i", 1, s1, buf, &err), -1);
    cr_assert(strstr(err.msg, "tensor 'i' in ") && strstr(err.msg, "I64"), "%s", err.msg);
    cr_assert_eq(tensor_store_load_f32(ts, "q", 2, s42, buf, &err), -1);
    cr_assert(strstr(err.msg, "tensor 'q' in ") && strstr(err.msg, "model.safetensors has shape [2,4], expected [4,2]"),
              "%s", err.msg);
    cr_assert_eq(tensor_store_load_f32(ts, "x", 2, s42, buf, &err), -1);
    cr_assert(strstr(err.msg, t.dir) && strstr(err.msg, "missing tensor 'x'"), "%s", err.msg);
    tensor_store_free(ts);
    tmp_clean(&t);
}

/* ---- writer ---- */

Test(safetensors_write, buffered_roundtrip) {
    tmpdir_t t;
    tmp_make(&t);
    char path[512];
    snprintf(path, sizeof path, "%s/model.safetensors", t.dir);
    spex_err_t err = {0};
    st_writer_t *w = st_writer_create();
    float a[6];
    test_fill_random(a, 6, 1, 2.0f);
    uint16_t b[3] = {f32_to_bf16(1.0f), f32_to_bf16(-2.5f), f32_to_bf16(0.125f)};
    uint8_t q[2] = {0x38, 0xb8};
    int64_t sa[2] = {2, 3}, sb[1] = {3}, sq[2] = {1, 2}, ss[2] = {1, 1};
    float scale = 0.5f;
    cr_assert_eq(st_writer_add(w, "zeta", DTYPE_F32, 2, sa, a, sizeof a, &err), 0, "%s", err.msg);
    cr_assert_eq(st_writer_add(w, "alpha \"quoted\"", DTYPE_BF16, 1, sb, b, sizeof b, &err), 0, "%s", err.msg);
    cr_assert_eq(st_writer_add(w, "q", DTYPE_F8_E4M3, 2, sq, q, 2, &err), 0, "%s", err.msg);
    cr_assert_eq(st_writer_add(w, "q_scale_inv", DTYPE_F32, 2, ss, &scale, 4, &err), 0, "%s", err.msg);
    cr_assert_eq(st_writer_add(w, "zeta", DTYPE_F32, 2, sa, a, sizeof a, &err), -1, "duplicate name");
    cr_assert_eq(st_writer_add(w, "bad", DTYPE_F32, 2, sa, a, 4, &err), -1, "size mismatch");
    cr_assert_eq(st_writer_data_bytes(w), 24 + 6 + 2 + 4);
    cr_assert_eq(st_writer_write(w, path, &err), 0, "%s", err.msg);
    st_writer_free(w);
    /* header length is a multiple of 8 and entries are sorted */
    size_t len;
    char *raw = test_read_file(path, &len);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | (uint8_t)raw[i];
    cr_assert_eq(n % 8, 0);
    cr_assert_eq(len, 8 + n + 36);
    cr_assert(strstr(raw + 8, "\"__metadata__\":{\"format\":\"pt\"}"));
    cr_assert_lt(strstr(raw + 8, "alpha") - raw, strstr(raw + 8, "zeta") - raw);
    free(raw);
    tensor_store_t *ts = tensor_store_open(t.dir, NULL, &err);
    cr_assert_not_null(ts, "%s", err.msg);
    float got[6];
    cr_assert_eq(tensor_store_load_f32(ts, "zeta", 2, sa, got, &err), 0, "%s", err.msg);
    cr_assert_eq(memcmp(got, a, sizeof a), 0);
    cr_assert_eq(tensor_store_load_f32(ts, "alpha \"quoted\"", 1, sb, got, &err), 0, "%s", err.msg);
    cr_assert_eq(got[1], -2.5f);
    cr_assert_eq(tensor_store_load_f32(ts, "q", 2, sq, got, &err), 0, "%s", err.msg);
    cr_assert_eq(got[0], 0.5f);
    cr_assert_eq(got[1], -0.5f);
    tensor_store_free(ts);
    tmp_clean(&t);
}

Test(safetensors_write, streaming) {
    tmpdir_t t;
    tmp_make(&t);
    char path[512];
    snprintf(path, sizeof path, "%s/x.safetensors", t.dir);
    spex_err_t err = {0};
    st_writer_t *w = st_writer_create();
    int64_t s1[2] = {4, 5}, s2[1] = {7};
    cr_assert_eq(st_writer_declare(w, "b", DTYPE_F32, 2, s1, &err), 0);
    cr_assert_eq(st_writer_declare(w, "a", DTYPE_F16, 1, s2, &err), 0);
    cr_assert_eq(st_writer_begin(w, path, &err), 0, "%s", err.msg);
    cr_assert_eq(access(path, F_OK), -1, "nothing at the final path before finish");
    float x[20];
    test_fill_random(x, 20, 7, 1.0f);
    cr_assert_eq(st_writer_put(w, x, 30, &err), 0, "%s", err.msg);     /* chunked */
    cr_assert_eq(st_writer_put(w, (char *)x + 30, 50, &err), 0, "%s", err.msg);
    uint16_t h[7];
    for (int i = 0; i < 7; i++) h[i] = f32_to_f16((float)i - 3.0f);
    cr_assert_eq(st_writer_put(w, h, 14, &err), 0, "%s", err.msg);
    cr_assert_eq(st_writer_put(w, h, 1, &err), -1, "more data than declared");
    cr_assert_eq(st_writer_finish(w, &err), 0, "%s", err.msg);
    st_writer_free(w);
    tensor_store_t *ts = tensor_store_open_file(path, NULL, &err);
    cr_assert_not_null(ts, "%s", err.msg);
    float got[20];
    cr_assert_eq(tensor_store_load_f32(ts, "b", 2, s1, got, &err), 0, "%s", err.msg);
    cr_assert_eq(memcmp(got, x, sizeof x), 0);
    cr_assert_eq(tensor_store_load_f32(ts, "a", 1, s2, got, &err), 0, "%s", err.msg);
    for (int i = 0; i < 7; i++) cr_assert_eq(got[i], (float)i - 3.0f);
    tensor_store_free(ts);
    /* unfinished stream: freeing removes the temp file and leaves no output */
    snprintf(path, sizeof path, "%s/y.safetensors", t.dir);
    w = st_writer_create();
    cr_assert_eq(st_writer_declare(w, "b", DTYPE_F32, 2, s1, &err), 0);
    cr_assert_eq(st_writer_begin(w, path, &err), 0);
    cr_assert_eq(st_writer_finish(w, &err), -1);
    cr_assert(strstr(err.msg, "tensor 'b'"), "%s", err.msg);
    st_writer_free(w);
    cr_assert_eq(access(path, F_OK), -1);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "test $(ls -A '%s' | wc -l) -eq 1", t.dir);
    cr_assert_eq(system(cmd), 0, "only x.safetensors remains");
    tmp_clean(&t);
}

/* Resident kB of the mapping that holds address p (its /proc/self/smaps entry), -1 if none. */
static long mapping_rss_kb(const void *p) {
    FILE *f = fopen("/proc/self/smaps", "r");
    cr_assert_not_null(f);
    char line[512];
    long rss = -1;
    bool inside = false;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2) {   /* an entry's first line: its address range */
            inside = (unsigned long)p >= lo && (unsigned long)p < hi;
            continue;
        }
        if (inside && sscanf(line, "Rss: %ld kB", &rss) == 1) break;
    }
    fclose(f);
    return rss;
}

/* After a copying load nothing reads the file mappings, but what the load read
 * there stays mapped (and counts in RSS) until tensor_store_release_mapped; a
 * read after it still sees the file's bytes. */
Test(safetensors, release_mapped_pages) {
    char dir[1024];
    spex_err_t err = {0};
    tensor_store_t *ts = tensor_store_open(golden_path(dir, sizeof dir, "tiny-fp8", NULL), BLOCK, &err);
    cr_assert_not_null(ts, "%s", err.msg);
    const st_tensor_t *t = tensor_store_find(ts, "model.layers.0.mlp.down_proj.weight");
    cr_assert_not_null(t);
    uint8_t *before = malloc(t->nbytes);
    memcpy(before, t->data, t->nbytes);   /* touches the tensor's pages */
    float *sc = tensor_store_fp8_scales(ts, t, &err);
    cr_assert_not_null(sc, "%s", err.msg);
    long rss0 = mapping_rss_kb(t->data);
    cr_assert_gt(rss0, 0, "the pages read are resident in the mapping");
    tensor_store_release_mapped(ts);
    cr_assert_eq(mapping_rss_kb(t->data), 0, "was %ld kB", rss0);
    cr_assert_eq(memcmp(before, t->data, t->nbytes), 0, "the bytes read again from the file");
    free(before);
    free(sc);
    tensor_store_free(ts);
}
