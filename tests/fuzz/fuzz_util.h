/* fuzz_util.h - helpers shared by the libFuzzer harnesses of tests/fuzz/: a
 * private scratch directory per fuzzing process (the readers under test take
 * paths), writing an input into a file there, and a NUL-terminated copy of an
 * input for parsers that take C strings. Header-only: each harness is one
 * executable. */
#ifndef SPEX_FUZZ_UTIL_H
#define SPEX_FUZZ_UTIL_H

#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char fuzz_dir[64];

static inline int fuzz_rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static inline void fuzz_rm_scratch(void) { nftw(fuzz_dir, fuzz_rm_one, 8, FTW_DEPTH | FTW_PHYS); }

/* mkdtemp'ed once per process under /dev/shm (or /tmp), removed at exit (a
 * crash leaves it: its input is in the artifact anyway); the files in it are
 * overwritten on every input. */
static inline const char *fuzz_scratch_dir(void) {
    if (!fuzz_dir[0]) {
        snprintf(fuzz_dir, sizeof fuzz_dir, "%s/spex-fuzz-XXXXXX", access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
        if (!mkdtemp(fuzz_dir)) abort();
        atexit(fuzz_rm_scratch);
    }
    return fuzz_dir;
}

/* dir/name (a static buffer per call site is the caller's business: returns malloc'ed path). */
static inline char *fuzz_path(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (!p) abort();
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static inline void fuzz_write_file(const char *path, const uint8_t *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    if (n && fwrite(data, 1, n, f) != n) abort();
    if (fclose(f)) abort();
}

static inline char *fuzz_cstr(const uint8_t *data, size_t n) {
    char *s = malloc(n + 1);
    if (!s) abort();
    memcpy(s, data, n);
    s[n] = '\0';
    return s;
}

#endif
