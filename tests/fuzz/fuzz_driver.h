/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * Shared by the core fuzz targets (tests/fuzz/fuzz_*.c, not fuzz_license.c).
 *
 * Each target is built two ways from its one file: with -DDRAY_LIBFUZZER and
 * -fsanitize=fuzzer (clang, DRAY_FUZZ=ON), where libFuzzer supplies main(),
 * and as a plain regression driver whose main() (below) runs every file in
 * the directories or files it is given (ctest `fuzz_<name>_corpus`).
 *
 * A broken invariant is reported with FUZZ_FAIL: the message on stderr, then
 * abort(), which libFuzzer records as a crash with its reproducer.
 */
#ifndef DRAY_FUZZ_DRIVER_H
#define DRAY_FUZZ_DRIVER_H

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dray/dray.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Print why an invariant broke, then abort (a libFuzzer crash). */
#define FUZZ_FAIL(...)                                                                             \
    do {                                                                                           \
        fprintf(stderr, "fuzz invariant broken at %s:%d: ", __FILE__, __LINE__);                   \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fputc('\n', stderr);                                                                       \
        abort();                                                                                   \
    } while (0)

#define FUZZ_ASSERT(cond, ...)                                                                     \
    do {                                                                                           \
        if (!(cond))                                                                               \
            FUZZ_FAIL(__VA_ARGS__);                                                                \
    } while (0)

/* A refusal must be a DRAY_E* code and, unless it is DRAY_ENOMEM (which the
 * core reports without text), come with a terminated, non-empty message in
 * msg[0..cap). */
static inline void
fuzz_check_refusal(const char *what, int rc, const char *msg, size_t cap)
{
    FUZZ_ASSERT(rc < 0 && strcmp(dray_err_name(rc), "EUNKNOWN") != 0,
                "%s: refused with %d, which is not a DRAY_E* code", what, rc);
    if (rc == DRAY_ENOMEM)
        return;
    FUZZ_ASSERT(memchr(msg, '\0', cap) != NULL, "%s: message not terminated", what);
    FUZZ_ASSERT(msg[0] != '\0', "%s: refused (%s) without a message", what, dray_err_name(rc));
}

#ifndef DRAY_LIBFUZZER
/* Feed one file to the target; -1 when it cannot be read. */
static int
fuzz_run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    static uint8_t buf[1 << 20];
    size_t n;

    if (f == NULL) {
        perror(path);
        return -1;
    }
    n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    LLVMFuzzerTestOneInput(buf, n);
    return 0;
}

/* Run every file named or inside a directory named; fails on an empty corpus. */
int
main(int argc, char **argv)
{
    int count = 0;

    for (int i = 1; i < argc; i++) {
        DIR *d = opendir(argv[i]);
        struct dirent *e;
        if (d == NULL) {
            if (fuzz_run_file(argv[i]) != 0)
                return 1;
            count++;
            continue;
        }
        while ((e = readdir(d)) != NULL) {
            char path[4096];
            if (e->d_name[0] == '.')
                continue;
            snprintf(path, sizeof path, "%s/%s", argv[i], e->d_name);
            if (fuzz_run_file(path) != 0) {
                closedir(d);
                return 1;
            }
            count++;
        }
        closedir(d);
    }
    printf("%s: %d inputs, every invariant held\n", argv[0], count);
    return count > 0 ? 0 : 1; /* an empty corpus is a broken test, not a pass */
}
#endif

#endif
