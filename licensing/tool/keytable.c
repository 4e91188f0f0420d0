/* SPDX-License-Identifier: LicenseRef-dray-commercial */
/*
 * dray-license-keytable: build-time generator of a trusted-key table.
 *
 *   dray-license-keytable --out FILE.c [--build-date YYYY-MM-DD]
 *                         [--revoked LIST]... [--refuse PUBFILE]... [PUBFILE]...
 *   dray-license-keytable --keygen NAME DIR    (passphrase: $DRAY_LICENSE_PASSPHRASE)
 *
 * Writes a C file defining dray_license_trusted_keys[] (kid + public key of
 * every PUBFILE), dray_license_revoked_lids[] (every lid in every LIST: one per
 * line, '#' comments) and dray_license_build_time. Fails on unreadable or
 * duplicate keys and on malformed lids, so a broken list breaks the build
 * rather than shipping. --refuse names a key that must not be in the table
 * (the build's throwaway test key): compared by key, not by path, so a
 * symlink or a copy of it fails the build. Driven by dray_license_keytable()
 * in CMake. --keygen makes the throwaway keypair (the same files as
 * `dray-license keygen`) without needing the tool, which links a table.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "license_internal.h"

#define MAX_KEYS 64
#define MAX_LIDS 4096

static void
usage(FILE *f)
{
    fprintf(f, "usage: dray-license-keytable --out FILE.c [--build-date YYYY-MM-DD] "
               "[--revoked LIST]... [--refuse PUBFILE]... [PUBFILE]...\n"
               "       dray-license-keytable --keygen NAME DIR\n");
}

int
main(int argc, char **argv)
{
    const char *out = NULL, *date = NULL, *pubs[MAX_KEYS], *revoked[64], *refuse[8];
    size_t nrefuse = 0;
    unsigned char pks[MAX_KEYS][DRAY_LICENSE_PK_BYTES];
    char kids[MAX_KEYS][DRAY_LICENSE_KID_BYTES], err[DRAY__LICENSE_ERR_BYTES], tmp[4096];
    static dray__license_lid lids[MAX_LIDS];
    size_t npubs = 0, nrevoked = 0, nlids = 0, i, j;
    int64_t build_time = 0;
    FILE *f;
    int a;

    if (argc == 4 && strcmp(argv[1], "--keygen") == 0) {
        const char *pass = getenv("DRAY_LICENSE_PASSPHRASE");
        char kid[DRAY_LICENSE_KID_BYTES];
        if (sodium_init() < 0 || pass == NULL || *pass == '\0') {
            fprintf(stderr, "dray-license-keytable --keygen: set DRAY_LICENSE_PASSPHRASE\n");
            return 64;
        }
        if (dray__license_keygen(argv[3], argv[2], pass, strlen(pass), kid, err, sizeof err)) {
            fprintf(stderr, "dray-license-keytable --keygen: %s\n", err);
            return 1;
        }
        printf("%s\n", kid);
        return 0;
    }
    for (a = 1; a < argc; a++) {
        if (strcmp(argv[a], "--out") == 0 && a + 1 < argc)
            out = argv[++a];
        else if (strcmp(argv[a], "--build-date") == 0 && a + 1 < argc)
            date = argv[++a];
        else if (strcmp(argv[a], "--revoked") == 0 && a + 1 < argc && nrevoked < 64)
            revoked[nrevoked++] = argv[++a];
        else if (strcmp(argv[a], "--refuse") == 0 && a + 1 < argc && nrefuse < 8)
            refuse[nrefuse++] = argv[++a];
        else if (strcmp(argv[a], "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (argv[a][0] == '-' || npubs == MAX_KEYS) {
            usage(stderr);
            return 64;
        } else
            pubs[npubs++] = argv[a];
    }
    if (out == NULL || sodium_init() < 0) {
        usage(stderr);
        return 64;
    }
    if (date != NULL && dray__license_parse_date(date, &build_time) != 0) {
        fprintf(stderr, "dray-license-keytable: bad --build-date %s\n", date);
        return 64;
    }

    for (i = 0; i < npubs; i++) {
        if (dray__license_read_pub(pubs[i], pks[i], err, sizeof err) != 0) {
            fprintf(stderr, "dray-license-keytable: %s\n", err);
            return 1;
        }
        dray__license_kid(pks[i], kids[i]);
        for (j = 0; j < i; j++)
            if (strcmp(kids[i], kids[j]) == 0) {
                fprintf(stderr, "dray-license-keytable: %s and %s have the same kid %s\n", pubs[j],
                        pubs[i], kids[i]);
                return 1;
            }
    }
    for (j = 0; j < nrefuse; j++) {
        unsigned char bad[DRAY_LICENSE_PK_BYTES];
        char badkid[DRAY_LICENSE_KID_BYTES];
        if (dray__license_read_pub(refuse[j], bad, err, sizeof err) != 0) {
            fprintf(stderr, "dray-license-keytable: --refuse %s\n", err);
            return 1;
        }
        dray__license_kid(bad, badkid);
        for (i = 0; i < npubs; i++)
            if (sodium_memcmp(bad, pks[i], DRAY_LICENSE_PK_BYTES) == 0) {
                fprintf(stderr,
                        "dray-license-keytable: %s is the throwaway test key %s (kid %s), "
                        "whatever its path: a release table must not trust it\n",
                        pubs[i], refuse[j], badkid);
                return 1;
            }
    }
    for (i = 0; i < nrevoked; i++)
        if (dray__license_read_lids(revoked[i], lids, MAX_LIDS, &nlids, err, sizeof err) != 0) {
            fprintf(stderr, "dray-license-keytable: %s\n", err);
            return 1;
        }

    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", out) >= sizeof tmp || !(f = fopen(tmp, "w"))) {
        perror(out);
        return 1;
    }
    fprintf(f,
            "/* SPDX-License-Identifier: LicenseRef-dray-commercial */\n"
            "/* Generated by dray-license-keytable at build time. Do not edit, do not commit. */\n"
            "#include \"dray/license.h\"\n\n"
            "const dray_license_trusted_key dray_license_trusted_keys[] = {\n");
    for (i = 0; i < npubs; i++) {
        fprintf(f, "    {\"%s\", {", kids[i]);
        for (j = 0; j < DRAY_LICENSE_PK_BYTES; j++)
            fprintf(f, "%s0x%02x", j ? "," : "", pks[i][j]);
        fprintf(f, "}}, /* %s */\n", strrchr(pubs[i], '/') ? strrchr(pubs[i], '/') + 1 : pubs[i]);
    }
    if (npubs == 0)
        fprintf(f, "    {\"\", {0}}, /* placeholder: this table trusts no key */\n");
    fprintf(f, "};\nconst size_t dray_license_trusted_keys_count = %zu;\n\n", npubs);
    fprintf(f, "const char *const dray_license_revoked_lids[] = {\n");
    for (i = 0; i < nlids; i++)
        fprintf(f, "    \"%s\",\n", lids[i].lid);
    if (nlids == 0)
        fprintf(f, "    \"\", /* placeholder: nothing revoked */\n");
    fprintf(f, "};\nconst size_t dray_license_revoked_lids_count = %zu;\n\n", nlids);
    fprintf(f, "const int64_t dray_license_build_time = %lld; /* %s */\n", (long long)build_time,
            date ? date : "unset");
    if (fclose(f) != 0 || rename(tmp, out) != 0) {
        perror(out);
        remove(tmp);
        return 1;
    }
    return 0;
}
