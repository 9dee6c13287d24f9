/* bench_codec.c - size and speed of the transport codecs on activation rows.
 *
 * For hidden = 7168 (DeepSeek-V3) and 1024, and 1, 16 and 256 tokens, every codec
 * (default: raw, raw+zstd, bf16, bf16+zstd, fp8, fp8+zstd; or the --codec specs)
 * encodes and decodes x[tokens, hidden] on one thread, with one codec context.
 * Printed per row: bytes per token raw (f32) and encoded, ratio = raw / encoded,
 * encode and decode throughput in MB/s of f32 activations (1 MB = 1e6 bytes) - so
 * the speeds of all codecs are comparable. Ratios and speeds come from the same run.
 *
 * Data ("realistic activations"): x[t, c] = sigma_c * g[t, c] with g ~ N(0, 1)
 * (Box-Muller, fixed seed), sigma_c log-uniform in [0.25, 4] per channel, and 0.5%
 * of channels (the same ones for every token, as LLM "massive activation"
 * channels are) scaled 50x more.
 *
 * Usage: bench_codec [--csv] [--time SECONDS per measurement, default 0.2]
 *                    [--codec SPEC]...   */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "transport/codec.h"

#define MAX_CODECS 16

typedef struct {
    bool csv;
    double min_time;
    int n_codecs;
    codec_t codecs[MAX_CODECS];
} bench_opts_t;

typedef struct {
    size_t enc_bytes;
    double enc_mbs, dec_mbs;
} bench_result_t;

static double uniform01(uint64_t *s) {
    *s ^= *s << 13; *s ^= *s >> 7; *s ^= *s << 17;
    return ((double)(*s >> 11) + 0.5) / 9007199254740992.0;
}

/* x[tokens, hidden] as described in the header comment. */
static void fill_activations(float *x, int tokens, int hidden, unsigned seed) {
    uint64_t s = 0x9E3779B97F4A7C15ull ^ seed;
    double *sigma = malloc((size_t)hidden * sizeof *sigma);
    for (int c = 0; c < hidden; c++) {
        sigma[c] = exp2(-2.0 + 4.0 * uniform01(&s));
        if (uniform01(&s) < 0.005) sigma[c] *= 50.0;
    }
    for (int t = 0; t < tokens; t++)
        for (int c = 0; c < hidden; c++) {
            double g = sqrt(-2.0 * log(uniform01(&s))) * cos(6.283185307179586 * uniform01(&s));
            x[(size_t)t * (size_t)hidden + (size_t)c] = (float)(sigma[c] * g);
        }
    free(sigma);
}

/* Repeat encode (or decode) for at least min_time seconds; returns MB/s of f32 input. */
static int time_codec(const codec_t *c, bool decode, const float *x, float *y, int rows, int cols, uint8_t *buf,
                      size_t cap, size_t *len, codec_ctx_t *ctx, double min_time, double *mbs, spex_err_t *err) {
    double t0 = spex_now(), t;
    long iters = 0;
    do {
        int rc = decode ? codec_decode(c, buf, *len, rows, cols, y, ctx, err)
                        : codec_encode(c, x, rows, cols, buf, cap, len, ctx, err);
        if (rc) return -1;
        iters++;
        t = spex_now() - t0;
    } while (t < min_time);
    *mbs = (double)iters * (double)rows * (double)cols * 4.0 / t / 1e6;
    return 0;
}

static int bench_one(const codec_t *c, const float *x, int rows, int cols, const bench_opts_t *o,
                     codec_ctx_t *ctx, bench_result_t *r, spex_err_t *err) {
    size_t cap = codec_max_encoded(c, rows, cols), len = 0;
    uint8_t *buf = malloc(cap ? cap : 1);
    float *y = malloc((size_t)rows * (size_t)cols * sizeof *y);
    int rc = -1;
    if (buf && y && !codec_encode(c, x, rows, cols, buf, cap, &len, ctx, err) &&   /* warm-up */
        !codec_decode(c, buf, len, rows, cols, y, ctx, err) &&
        !time_codec(c, false, x, y, rows, cols, buf, cap, &len, ctx, o->min_time, &r->enc_mbs, err) &&
        !time_codec(c, true, x, y, rows, cols, buf, cap, &len, ctx, o->min_time, &r->dec_mbs, err)) {
        r->enc_bytes = len;
        rc = 0;
    } else if (!buf || !y) {
        spex_fail(err, "out of memory");
    }
    free(buf);
    free(y);
    return rc;
}

static void print_header(const bench_opts_t *o) {
    if (o->csv) {
        printf("hidden,tokens,codec,raw_bytes_per_token,enc_bytes_per_token,ratio,encode_MBps,decode_MBps\n");
        return;
    }
    printf("codec benchmark: activations sigma_c * N(0,1), sigma_c log-uniform in [0.25, 4] per channel,\n"
           "0.5%% of channels x50 (fixed across tokens); one thread; MB/s = 1e6 bytes of f32 input per second\n\n");
    printf("%6s %6s %-12s %11s %11s %7s %10s %10s\n", "hidden", "tokens", "codec", "raw B/tok", "enc B/tok",
           "ratio", "enc MB/s", "dec MB/s");
}

static void print_row(const bench_opts_t *o, int hidden, int tokens, const codec_t *c, const bench_result_t *r) {
    char name[48];
    codec_name(c, name, sizeof name);
    double raw = 4.0 * hidden, enc = (double)r->enc_bytes / tokens;
    if (o->csv)
        printf("%d,%d,%s,%.0f,%.1f,%.3f,%.1f,%.1f\n", hidden, tokens, name, raw, enc, raw / enc, r->enc_mbs,
               r->dec_mbs);
    else
        printf("%6d %6d %-12s %11.0f %11.1f %7.3f %10.1f %10.1f\n", hidden, tokens, name, raw, enc, raw / enc,
               r->enc_mbs, r->dec_mbs);
}

static int parse_args(int argc, char **argv, bench_opts_t *o, spex_err_t *err) {
    *o = (bench_opts_t){.csv = false, .min_time = 0.2, .n_codecs = 0};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--csv")) o->csv = true;
        else if (!strcmp(argv[i], "--time") && i + 1 < argc) o->min_time = atof(argv[++i]);
        else if (!strcmp(argv[i], "--codec") && i + 1 < argc) {
            if (o->n_codecs == MAX_CODECS) return spex_fail(err, "at most %d --codec options", MAX_CODECS);
            if (codec_parse(argv[++i], &o->codecs[o->n_codecs++], err)) return -1;
        } else
            return spex_fail(err, "unknown argument '%s' (usage: bench_codec [--csv] [--time S] [--codec SPEC]...)",
                             argv[i]);
    }
    static const char *const defaults[] = {"raw", "raw+zstd", "bf16", "bf16+zstd", "fp8", "fp8+zstd"};
    for (int k = 0; o->n_codecs == 0 && k < 6; k++)
        if (codec_parse(defaults[k], &o->codecs[k], err)) return -1;
    if (o->n_codecs == 0) o->n_codecs = 6;
    return 0;
}

static int run(const bench_opts_t *o, codec_ctx_t *ctx, spex_err_t *err) {
    static const int hiddens[] = {7168, 1024}, tokens[] = {1, 16, 256};
    print_header(o);
    for (int h = 0; h < 2; h++)
        for (int t = 0; t < 3; t++) {
            float *x = malloc((size_t)tokens[t] * (size_t)hiddens[h] * sizeof *x);
            if (!x) return spex_fail(err, "out of memory");
            fill_activations(x, tokens[t], hiddens[h], 1);
            for (int k = 0; k < o->n_codecs; k++) {
                bench_result_t r;
                if (bench_one(&o->codecs[k], x, tokens[t], hiddens[h], o, ctx, &r, err)) { free(x); return -1; }
                print_row(o, hiddens[h], tokens[t], &o->codecs[k], &r);
            }
            free(x);
            if (!o->csv) printf("\n");
        }
    return 0;
}

int main(int argc, char **argv) {
    spex_err_t err = {{0}};
    bench_opts_t o;
    if (parse_args(argc, argv, &o, &err)) {
        fprintf(stderr, "bench_codec: %s\n", err.msg);
        return 2;
    }
    codec_ctx_t *ctx = codec_ctx_create(&err);
    int rc = ctx ? run(&o, ctx, &err) : -1;
    codec_ctx_free(ctx);
    if (rc) fprintf(stderr, "bench_codec: %s\n", err.msg);
    return rc ? 1 : 0;
}
