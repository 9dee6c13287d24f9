/* test_file.c - core/file.h, the one whole-file reader of the loaders: exact
 * bytes and length (NUL bytes included), the empty file, files whose size the
 * kernel does not report (/proc), the size limit, and errors that say what
 * went wrong without naming the file (callers prefix it). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/file.h"

/* A temporary file holding data[0 .. n); its path in out[64]. */
static void temp_file(char out[64], const void *data, size_t n) {
    snprintf(out, 64, "/tmp/spex_test_file_XXXXXX");
    int fd = mkstemp(out);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, data, n), (ssize_t)n);
    close(fd);
}

Test(file, exact_bytes_and_length) {
    char path[64];
    const char data[] = "{\"a\":1}\n\0tail";
    temp_file(path, data, sizeof data - 1);
    size_t len = 0;
    spex_err_t err = {0};
    char *s = spex_read_file(path, 1 << 20, &len, &err);
    cr_assert_not_null(s, "%s", err.msg);
    cr_assert_eq(len, sizeof data - 1);
    cr_assert_eq(memcmp(s, data, len), 0);
    cr_assert_eq(s[len], '\0');
    free(s);
    unlink(path);
}

Test(file, empty_file_is_an_empty_string) {
    char path[64];
    temp_file(path, "", 0);
    size_t len = 99;
    spex_err_t err = {0};
    char *s = spex_read_file(path, 16, &len, &err);
    cr_assert_not_null(s, "%s", err.msg);
    cr_assert_eq(len, 0);
    cr_assert_str_eq(s, "");
    free(s);
    unlink(path);
}

Test(file, reads_to_the_end_when_the_size_is_unknown) {
    spex_err_t err = {0};
    size_t len = 0;
    char *s = spex_read_file("/proc/self/status", 1 << 20, &len, &err);   /* stat says 0 bytes */
    cr_assert_not_null(s, "%s", err.msg);
    cr_assert_gt(len, 0);
    cr_assert_not_null(strstr(s, "Name:"));
    free(s);
}

Test(file, size_limit) {
    char path[64];
    char data[100];
    memset(data, 'x', sizeof data);
    temp_file(path, data, sizeof data);
    spex_err_t err = {0};
    cr_assert_null(spex_read_file(path, 99, NULL, &err));
    cr_assert_str_eq(err.msg, "larger than 99 bytes");
    char *s = spex_read_file(path, 100, NULL, &err);   /* exactly the limit is fine */
    cr_assert_not_null(s, "%s", err.msg);
    free(s);
    unlink(path);
}

Test(file, missing_file_and_directory) {
    spex_err_t err = {0};
    cr_assert_null(spex_read_file("/nonexistent/spex/file.json", 1 << 20, NULL, &err));
    cr_assert_str_eq(err.msg, "cannot open: No such file or directory");
    cr_assert_null(spex_read_file("/tmp", 1 << 20, NULL, &err));
    cr_assert_not_null(strstr(err.msg, "read error"), "%s", err.msg);
}
