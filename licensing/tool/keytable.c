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

/* What the command line asked for, then the keys and lids read. */
typedef struct table_args {
    const char *out, *date, *pubs[MAX_KEYS], *revoked[64], *refuse[8]; /* argv strings */
    size_t npubs, nrevoked, nrefuse;
    int64_t build_time;
    unsigned char pks[MAX_KEYS][DRAY_LICENSE_PK_BYTES]; /* the key of pubs[i] */
    char kids[MAX_KEYS][DRAY_LICENSE_KID_BYTES];        /* its kid */
    dray__license_lid lids[MAX_LIDS];                   /* every revoked lid */
    size_t nlids;
} table_args;

/* --keygen NAME DIR: the throwaway keypair. Returns the exit status. */
static int
keygen(const char *name, const char *dir)
{
    const char *pass = getenv("DRAY_LICENSE_PASSPHRASE");
    char kid[DRAY_LICENSE_KID_BYTES], err[DRAY__LICENSE_ERR_BYTES];
    if (sodium_init() < 0 || pass == NULL || *pass == '\0') {
        fprintf(stderr, "dray-license-keytable --keygen: set DRAY_LICENSE_PASSPHRASE\n");
        return 64;
    }
    if (dray__license_keygen(dir, name, pass, strlen(pass), kid, err, sizeof err)) {
        fprintf(stderr, "dray-license-keytable --keygen: %s\n", err);
        return 1;
    }
    printf("%s\n", kid);
    return 0;
}

/* Reads the options into *a (strings borrowed from argv). -1 to go on, else
 * the exit status (0 after --help, 64 on a usage error, printed). */
static int
parse_args(int argc, char **argv, table_args *a)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--out") == 0 && i + 1 < argc)
            a->out = argv[++i];
        else if (strcmp(argv[i], "--build-date") == 0 && i + 1 < argc)
            a->date = argv[++i];
        else if (strcmp(argv[i], "--revoked") == 0 && i + 1 < argc && a->nrevoked < 64)
            a->revoked[a->nrevoked++] = argv[++i];
        else if (strcmp(argv[i], "--refuse") == 0 && i + 1 < argc && a->nrefuse < 8)
            a->refuse[a->nrefuse++] = argv[++i];
        else if (strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (argv[i][0] == '-' || a->npubs == MAX_KEYS) {
            usage(stderr);
            return 64;
        } else
            a->pubs[a->npubs++] = argv[i];
    }
    if (a->out == NULL || sodium_init() < 0) {
        usage(stderr);
        return 64;
    }
    if (a->date != NULL && dray__license_parse_date(a->date, &a->build_time) != 0) {
        fprintf(stderr, "dray-license-keytable: bad --build-date %s\n", a->date);
        return 64;
    }
    return -1;
}

/* Reads every public key (refusing duplicate kids and any --refuse key) and
 * every revoked lid into *a. 0, or 1 with the reason printed. */
static int
read_inputs(table_args *a)
{
    char err[DRAY__LICENSE_ERR_BYTES];
    size_t i, j;
    for (i = 0; i < a->npubs; i++) {
        if (dray__license_read_pub(a->pubs[i], a->pks[i], err, sizeof err) != 0) {
            fprintf(stderr, "dray-license-keytable: %s\n", err);
            return 1;
        }
        dray__license_kid(a->pks[i], a->kids[i]);
        for (j = 0; j < i; j++)
            if (strcmp(a->kids[i], a->kids[j]) == 0) {
                fprintf(stderr, "dray-license-keytable: %s and %s have the same kid %s\n",
                        a->pubs[j], a->pubs[i], a->kids[i]);
                return 1;
            }
    }
    for (j = 0; j < a->nrefuse; j++) {
        unsigned char bad[DRAY_LICENSE_PK_BYTES];
        char badkid[DRAY_LICENSE_KID_BYTES];
        if (dray__license_read_pub(a->refuse[j], bad, err, sizeof err) != 0) {
            fprintf(stderr, "dray-license-keytable: --refuse %s\n", err);
            return 1;
        }
        dray__license_kid(bad, badkid);
        for (i = 0; i < a->npubs; i++)
            if (sodium_memcmp(bad, a->pks[i], DRAY_LICENSE_PK_BYTES) == 0) {
                fprintf(stderr,
                        "dray-license-keytable: %s is the throwaway test key %s (kid %s), "
                        "whatever its path: a release table must not trust it\n",
                        a->pubs[i], a->refuse[j], badkid);
                return 1;
            }
    }
    for (i = 0; i < a->nrevoked; i++)
        if (dray__license_read_lids(a->revoked[i], a->lids, MAX_LIDS, &a->nlids, err, sizeof err) !=
            0) {
            fprintf(stderr, "dray-license-keytable: %s\n", err);
            return 1;
        }
    return 0;
}

/* Writes the table's C source to f. Cannot fail (fclose reports errors). */
static void
write_table(FILE *f, const table_args *a)
{
    size_t i, j;
    fprintf(f,
            "/* SPDX-License-Identifier: LicenseRef-dray-commercial */\n"
            "/* Generated by dray-license-keytable at build time. Do not edit, do not commit. */\n"
            "#include \"dray/license.h\"\n\n"
            "const dray_license_trusted_key dray_license_trusted_keys[] = {\n");
    for (i = 0; i < a->npubs; i++) {
        fprintf(f, "    {\"%s\", {", a->kids[i]);
        for (j = 0; j < DRAY_LICENSE_PK_BYTES; j++)
            fprintf(f, "%s0x%02x", j ? "," : "", a->pks[i][j]);
        fprintf(f, "}}, /* %s */\n",
                strrchr(a->pubs[i], '/') ? strrchr(a->pubs[i], '/') + 1 : a->pubs[i]);
    }
    if (a->npubs == 0)
        fprintf(f, "    {\"\", {0}}, /* placeholder: this table trusts no key */\n");
    fprintf(f, "};\nconst size_t dray_license_trusted_keys_count = %zu;\n\n", a->npubs);
    fprintf(f, "const char *const dray_license_revoked_lids[] = {\n");
    for (i = 0; i < a->nlids; i++)
        fprintf(f, "    \"%s\",\n", a->lids[i].lid);
    if (a->nlids == 0)
        fprintf(f, "    \"\", /* placeholder: nothing revoked */\n");
    fprintf(f, "};\nconst size_t dray_license_revoked_lids_count = %zu;\n\n", a->nlids);
    fprintf(f, "const int64_t dray_license_build_time = %lld; /* %s */\n", (long long)a->build_time,
            a->date ? a->date : "unset");
}

int
main(int argc, char **argv)
{
    static table_args a; /* large (the lids): not on the stack */
    char tmp[4096];
    FILE *f;
    int rc;

    if (argc == 4 && strcmp(argv[1], "--keygen") == 0)
        return keygen(argv[2], argv[3]);
    if ((rc = parse_args(argc, argv, &a)) >= 0)
        return rc;
    if ((rc = read_inputs(&a)))
        return rc;
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", a.out) >= sizeof tmp ||
        !(f = fopen(tmp, "w"))) {
        perror(a.out);
        return 1;
    }
    write_table(f, &a);
    if (fclose(f) != 0 || rename(tmp, a.out) != 0) {
        perror(a.out);
        remove(tmp);
        return 1;
    }
    return 0;
}
