/* SPDX-License-Identifier: LicenseRef-dray-commercial */
/*
 * Fuzz the license-key parser and verifier.
 *
 * Each input is used twice:
 *   1. as a key, verified against the compiled-in (test) table and decoded
 *      unverified, as `inspect` does. It must never be accepted: nobody but
 *      the build can sign with the throwaway key.
 *   2. as a payload, signed in-process with a key made up at start-up and
 *      verified against it, so the fuzzer reaches the JSON field checks,
 *      states, messages and entitlement checks behind the signature. Seeds
 *      write "kid":"@@KID@@@", which is replaced by that key's kid.
 *
 * Built two ways from this one file: with -DDRAY_LIBFUZZER and
 * -fsanitize=fuzzer (clang, DRAY_FUZZ=ON), and as a plain regression driver
 * whose main() runs every file in the directories or files it is given
 * (ctest label `fuzz`, tests/fuzz/corpus/license).
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "dray/license.h"
#include "license_internal.h"

#define NOW INT64_C(1767225600) /* 2026-01-01: fixed, so runs are reproducible */
#define KID_MARK "@@KID@@@"     /* in a seed payload: replaced by this run's kid */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static dray_license_trusted_key fuzz_key;
static unsigned char fuzz_sk[DRAY__LICENSE_SK_BYTES];
static const char *const fuzz_revoked[] = {"0123456789abcdef0123456789abcdef"};

static void
setup(void)
{
    static int ready;

    if (ready)
        return;
    if (sodium_init() < 0)
        abort();
    crypto_sign_keypair(fuzz_key.pk, fuzz_sk);
    dray__license_kid(fuzz_key.pk, fuzz_key.kid);
    ready = 1;
}

/*
 * Messages must fit and terminate; checks must agree with verify. `decoded`:
 * the result of the unverified decode, where 0 does not mean verified.
 */
static void
exercise(int rc, dray_license_info *info, int decoded)
{
    char msg[DRAY_LICENSE_MSG_BYTES], tiny[9];
    static const dray_license_tier tiers[] = {DRAY_LICENSE_TIER_NONE, DRAY_LICENSE_TIER_PRO,
                                              DRAY_LICENSE_TIER_ENTERPRISE};
    size_t i;

    dray_license_describe(rc, info, msg, sizeof msg);
    if (memchr(msg, '\0', sizeof msg) == NULL || msg[0] == '\0')
        abort();
    dray_license_describe(rc, info, tiny, sizeof tiny);
    if (strlen(tiny) >= sizeof tiny)
        abort();
    dray_license_describe(rc, NULL, msg, sizeof msg);
    if (rc == 0 && !info->verified && !decoded)
        abort();
    if (decoded && info->verified)
        abort();
    if (!info->verified)
        return;
    for (i = 0; i < sizeof tiers / sizeof tiers[0]; i++) {
        int c = dray_license_check(info, tiers[i], DRAY_LICENSE_F_BATCHES);
        if (rc != 0 && c == 0) /* a refused key can never pass a check */
            abort();
        dray_license_describe(c, info, msg, sizeof msg);
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char key[DRAY_LICENSE_MAX_BYTES + 1];
    static uint8_t payload[DRAY_LICENSE_MAX_BYTES];
    dray_license_info info;
    int rc;

    setup();

    rc = dray_license_verify((const char *)data, size, NOW, &info);
    if (rc == 0 || info.verified)
        abort(); /* forged a signature by the throwaway key? */
    exercise(rc, &info, 0);
    rc = dray__license_decode_unverified((const char *)data, size, NOW, &info);
    exercise(rc, &info, 1);

    if (size <= sizeof payload) {
        /* Seeds write the kid as KID_MARK: swap in this run's kid so they get past it. */
        uint8_t *p = payload;
        memcpy(payload, data, size);
        while ((p = memmem(p, size - (size_t)(p - payload), KID_MARK, 8)) != NULL)
            memcpy(p, fuzz_key.kid, 8), p += 8;
        data = payload;
    }
    if (dray__license_sign(fuzz_sk, (const char *)data, size, key, sizeof key) == 0) {
        dray__license_keyring ring = {&fuzz_key, 1, fuzz_revoked, 1, NOW};
        int64_t when[] = {NOW, 0, DRAY_LICENSE_MAX_TIME};
        size_t i;
        for (i = 0; i < sizeof when / sizeof when[0]; i++) {
            rc = dray__license_verify_with(&ring, key, strlen(key), when[i], &info);
            exercise(rc, &info, 0);
        }
    }
    return 0;
}

#ifndef DRAY_LIBFUZZER
static int
run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    static uint8_t buf[1 << 16];
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

int
main(int argc, char **argv)
{
    int i, count = 0;

    for (i = 1; i < argc; i++) {
        DIR *d = opendir(argv[i]);
        struct dirent *e;
        if (d == NULL) {
            if (run_file(argv[i]) != 0)
                return 1;
            count++;
            continue;
        }
        while ((e = readdir(d)) != NULL) {
            char path[4096];
            if (e->d_name[0] == '.')
                continue;
            snprintf(path, sizeof path, "%s/%s", argv[i], e->d_name);
            if (run_file(path) != 0) {
                closedir(d);
                return 1;
            }
            count++;
        }
        closedir(d);
    }
    printf("fuzz_license: %d inputs, no crash\n", count);
    return count > 0 ? 0 : 1; /* an empty corpus is a broken test, not a pass */
}
#endif
