/* SPDX-License-Identifier: LicenseRef-dray-commercial */
/*
 * dray-license: the vendor's tool (licensing.md 2.9).
 *
 *   keygen  --name N [--dir D]                 new signing keypair
 *   issue   --key N.key --sub S --tier T --expires DATE|never ...
 *   verify  [--pub FILE]... [--now DATE] KEY|-  same verifier as the modules
 *   inspect KEY|-                               decode WITHOUT verifying
 *
 * The passphrase of a .key comes from $DRAY_LICENSE_PASSPHRASE or a prompt on
 * the terminal with echo off. Secrets are wiped after use.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "license_internal.h"

#define EX_OK_ 0
#define EX_SIG 1       /* bad signature, unknown kid */
#define EX_MALFORMED 2 /* malformed key */
#define EX_EXPIRED 3   /* lapsed (or a build newer than the key's updates) */
#define EX_NOTYET 4    /* iat in the future */
#define EX_REVOKED 5   /* lid on the deny-list */
#define EX_ENTITLE 6   /* --tier / --feature not covered */
#define EX_USAGE 64    /* sysexits EX_USAGE */
#define EX_FAIL 70     /* anything else: I/O, crypto, out of memory */

#define PASS_MAX 1024
#define MAX_PUBS 16
#define MAX_LIDS 4096
#define KEY_BUF (DRAY_LICENSE_MAX_BYTES + 1)

static const char *prog = "dray-license";

/* ---- small helpers ------------------------------------------------------- */

static int
usage_error(const char *cmd, const char *what)
{
    fprintf(stderr, "%s %s: %s (try `%s %s --help`)\n", prog, cmd, what, prog, cmd);
    return EX_USAGE;
}

/* Match "--name VALUE" or "--name=VALUE" at argv[*i]; advances *i. */
static int
opt(int argc, char **argv, int *i, const char *name, const char **val)
{
    size_t n = strlen(name);

    if (strcmp(argv[*i], name) == 0) {
        if (*i + 1 >= argc) {
            *val = NULL;
            return 1;
        }
        *val = argv[++*i];
        return 1;
    }
    if (strncmp(argv[*i], name, n) == 0 && argv[*i][n] == '=') {
        *val = argv[*i] + n + 1;
        return 1;
    }
    return 0;
}

static int
is_help(const char *s)
{
    return strcmp(s, "--help") == 0 || strcmp(s, "-h") == 0;
}

static void
print_date(FILE *f, const char *label, int64_t t, int64_t now)
{
    char d[DRAY__LICENSE_DATE_BYTES];
    int64_t delta = t - now;
    long days = (long)(delta / 86400 - (delta < 0 && delta % 86400 != 0));

    dray__license_format_date(t, d);
    if (days >= 0)
        fprintf(f, "%-13s %s (in %ld day%s)\n", label, d, days, days == 1 ? "" : "s");
    else
        fprintf(f, "%-13s %s (%ld day%s ago)\n", label, d, -days, days == -1 ? "" : "s");
}

/* Read KEY from argv or, for "-", from stdin. Returns bytes, or -1. */
static long
read_key(const char *arg, char *buf, size_t cap)
{
    size_t n = 0, r;

    if (strcmp(arg, "-") != 0) {
        n = strlen(arg);
        if (n >= cap)
            n = cap - 1; /* still longer than any key: verify says too long */
        memcpy(buf, arg, n);
        buf[n] = '\0';
        return (long)n;
    }
    while (n < cap - 1 && (r = fread(buf + n, 1, cap - 1 - n, stdin)) > 0)
        n += r;
    if (ferror(stdin))
        return -1;
    buf[n] = '\0';
    return (long)n;
}

/* Passphrase from the environment or the terminal. 0 or -1. Caller wipes buf. */
static int
read_passphrase(char *buf, size_t cap, int confirm)
{
    const char *env = getenv("DRAY_LICENSE_PASSPHRASE");
    char again[PASS_MAX];
    struct termios old, quiet;
    FILE *tty;
    int rc = -1, round;

    if (env != NULL) {
        if (strlen(env) == 0 || strlen(env) >= cap) {
            fprintf(stderr, "%s: DRAY_LICENSE_PASSPHRASE is empty or too long\n", prog);
            return -1;
        }
        memcpy(buf, env, strlen(env) + 1);
        return 0;
    }
    tty = fopen("/dev/tty", "r+");
    if (tty == NULL) {
        fprintf(stderr, "%s: no terminal for the passphrase; set DRAY_LICENSE_PASSPHRASE\n", prog);
        return -1;
    }
    if (tcgetattr(fileno(tty), &old) != 0) {
        fclose(tty);
        return -1;
    }
    quiet = old;
    quiet.c_lflag &= ~(tcflag_t)ECHO;
    tcsetattr(fileno(tty), TCSAFLUSH, &quiet);
    for (round = 0; round < (confirm ? 2 : 1); round++) {
        char *dst = round ? again : buf;
        fputs(round ? "Repeat passphrase: " : "Passphrase: ", tty);
        fflush(tty);
        if (fgets(dst, (int)cap, tty) == NULL)
            goto out;
        fputs("\n", tty);
        dst[strcspn(dst, "\r\n")] = '\0';
    }
    if (buf[0] == '\0')
        fprintf(stderr, "%s: empty passphrase\n", prog);
    else if (confirm && strcmp(buf, again) != 0)
        fprintf(stderr, "%s: passphrases differ\n", prog);
    else
        rc = 0;
out:
    tcsetattr(fileno(tty), TCSAFLUSH, &old);
    fclose(tty);
    sodium_memzero(again, sizeof again);
    return rc;
}

/* Exit code of the verify command for a verify/check outcome. */
static int
exit_code(int rc)
{
    switch (rc) {
    case 0:
        return EX_OK_;
    case DRAY_ELIC_BADSIG:
    case DRAY_ELIC_UNKNOWN_KID:
    case DRAY_ELIC_KID_MISMATCH:
        return EX_SIG;
    case DRAY_ELIC_EMPTY:
    case DRAY_ELIC_TOOLONG:
    case DRAY_ELIC_PREFIX:
    case DRAY_ELIC_FIELDS:
    case DRAY_ELIC_PAYLOAD_B64:
    case DRAY_ELIC_SIG_B64:
    case DRAY_ELIC_SIG_LEN:
    case DRAY_ELIC_JSON:
    case DRAY_ELIC_MISSING:
    case DRAY_ELIC_FIELD:
        return EX_MALFORMED;
    case DRAY_ELIC_LAPSED:
    case DRAY_ELIC_UPDATES:
        return EX_EXPIRED;
    case DRAY_ELIC_NOT_YET_VALID:
        return EX_NOTYET;
    case DRAY_ELIC_REVOKED:
        return EX_REVOKED;
    case DRAY_ELIC_WRONG_TIER:
    case DRAY_ELIC_MISSING_FEATURE:
        return EX_ENTITLE;
    default:
        return EX_FAIL;
    }
}

static void
print_fields(FILE *f, const dray_license_info *in)
{
    char feats[160] = "", *p = feats;
    unsigned bit;

    for (bit = 0; bit < 32; bit++) {
        const char *name = dray_license_feature_name(1u << bit);
        if (name != NULL && (in->features & (1u << bit)))
            p += snprintf(p, sizeof feats - (size_t)(p - feats), "%s%s", p == feats ? "" : ",",
                          name);
    }
    fprintf(f, "licensee      %s\n", in->sub);
    fprintf(f, "license id    %s\n", in->lid);
    fprintf(f, "key id        %s\n", in->kid);
    fprintf(f, "tier          %s\n", dray_license_tier_name(in->tier));
    fprintf(f, "features      %s%s\n", feats[0] ? feats : "none",
            in->features_listed ? "" : " (all of the tier)");
    print_date(f, "issued", in->iat, in->now);
    if (in->exp == 0) {
        fprintf(f, "expires       never (perpetual)\n");
    } else {
        print_date(f, "expires", in->exp, in->now);
        print_date(f, "grace ends", in->grace_end, in->now);
    }
    fprintf(f, "grace         %d days\n", in->grace_days);
    if (in->upd != 0)
        print_date(f, "updates until", in->upd, in->now);
    if (in->procs != 0)
        fprintf(f, "processes     %ld (advisory)\n", in->procs);
    if (in->email[0])
        fprintf(f, "email         %s\n", in->email);
    if (in->note[0])
        fprintf(f, "note          %s\n", in->note);
    fprintf(f, "state         %s\n", dray_license_state_name(in->state));
}

/* sha256 hex of the key with whitespace removed: what the ledger records. */
static void
fingerprint(const char *key, size_t len, char hex[2 * crypto_hash_sha256_BYTES + 1])
{
    crypto_hash_sha256_state st;
    unsigned char h[crypto_hash_sha256_BYTES];
    size_t i;

    crypto_hash_sha256_init(&st);
    for (i = 0; i < len; i++) {
        char c = key[i];
        if (c != ' ' && c != '\t' && c != '\r' && c != '\n' && c != '\v' && c != '\f')
            crypto_hash_sha256_update(&st, (const unsigned char *)key + i, 1);
    }
    crypto_hash_sha256_final(&st, h);
    sodium_bin2hex(hex, 2 * crypto_hash_sha256_BYTES + 1, h, sizeof h);
}

/* ---- keygen -------------------------------------------------------------- */

static int
cmd_keygen(int argc, char **argv)
{
    const char *name = NULL, *dir = ".", *v;
    char pass[PASS_MAX], kid[DRAY_LICENSE_KID_BYTES], err[DRAY__LICENSE_ERR_BYTES];
    int i, rc;

    for (i = 1; i < argc; i++) {
        if (is_help(argv[i])) {
            printf("usage: %s keygen --name NAME [--dir DIR]\n\n"
                   "Create DIR/NAME.key (Ed25519 secret key encrypted with a passphrase:\n"
                   "Argon2id + XSalsa20-Poly1305, mode 0600) and DIR/NAME.pub (public key,\n"
                   "signify style; list it in DRAY_LICENSE_PUBKEYS). Refuses to overwrite.\n"
                   "Prints the key id (kid). Passphrase: $DRAY_LICENSE_PASSPHRASE or prompt.\n",
                   prog);
            return 0;
        } else if (opt(argc, argv, &i, "--name", &v)) {
            if ((name = v) == NULL)
                return usage_error("keygen", "--name needs a value");
        } else if (opt(argc, argv, &i, "--dir", &v)) {
            if ((dir = v) == NULL)
                return usage_error("keygen", "--dir needs a value");
        } else {
            return usage_error("keygen", "unknown argument");
        }
    }
    if (name == NULL)
        return usage_error("keygen", "--name is required");
    if (read_passphrase(pass, sizeof pass, 1) != 0)
        return EX_FAIL;
    rc = dray__license_keygen(dir, name, pass, strlen(pass), kid, err, sizeof err);
    sodium_memzero(pass, sizeof pass);
    if (rc != 0) {
        fprintf(stderr, "%s keygen: %s\n", prog, err);
        return EX_FAIL;
    }
    printf("%s\n", kid);
    fprintf(stderr,
            "%s: wrote %s/%s.key (secret: keep it offline, never commit it) and %s/%s.pub "
            "(public: add it to DRAY_LICENSE_PUBKEYS); kid %s\n",
            prog, dir, name, dir, name, kid);
    return 0;
}

/* ---- issue --------------------------------------------------------------- */

static int
valid_text(const char *s, size_t max)
{
    size_t i, n = strlen(s);

    if (n > max)
        return 0;
    for (i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] == 0x7f)
            return 0;
    return 1;
}

static int
parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

/* --features a,b into bits; names must be known and fit the tier. */
static int
parse_features(const char *list, dray_license_tier tier, uint32_t *out)
{
    char buf[512], *tok, *save = NULL;

    if (strlen(list) >= sizeof buf)
        return -1;
    memcpy(buf, list, strlen(list) + 1);
    *out = 0;
    for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        uint32_t bit;
        if (dray_license_feature_parse(tok, &bit) != 0) {
            fprintf(stderr,
                    "%s issue: unknown feature \"%s\" (known: batches, notifications, "
                    "reliable_fetch, expiring_jobs, rate_limit, unique_jobs, periodic, "
                    "encryption)\n",
                    prog, tok);
            return -1;
        }
        if (tier == DRAY_LICENSE_TIER_PRO && !(bit & DRAY_LICENSE_F_PRO_ALL)) {
            fprintf(stderr, "%s issue: feature \"%s\" needs tier enterprise\n", prog, tok);
            return -1;
        }
        *out |= bit;
    }
    if (*out == 0) {
        fprintf(stderr, "%s issue: --features lists no feature\n", prog);
        return -1;
    }
    return 0;
}

/* Parse an end date: a calendar date means through the end of that day (UTC). */
static int
parse_until(const char *s, int64_t *out)
{
    if (dray__license_parse_date(s, out) != 0)
        return -1;
    if (strchr(s, '-') != NULL)
        *out += 86400 - 1;
    return 0;
}

static int
append_ledger(const char *path, json_t *line)
{
    char *text = json_dumps(line, JSON_COMPACT | JSON_SORT_KEYS);
    size_t n;
    int fd, rc = -1;

    if (text == NULL)
        return -1;
    n = strlen(text);
    text[n] = '\n'; /* json_dumps left the NUL there; we write n + 1 bytes */
    fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd >= 0) {
        /* One write: O_APPEND keeps concurrent issuers' lines whole. */
        if (write(fd, text, n + 1) == (ssize_t)(n + 1) && fsync(fd) == 0)
            rc = 0;
        if (close(fd) != 0)
            rc = -1;
    }
    free(text);
    return rc;
}

static void
issue_help(void)
{
    printf("usage: %s issue --key NAME.key --sub LICENSEE --tier pro|enterprise\n"
           "           --expires YYYY-MM-DD|never [--features a,b] [--grace DAYS]\n"
           "           [--email ADDR] [--note TEXT] [--procs N] [--updates-until YYYY-MM-DD]\n"
           "           [--issued-at YYYY-MM-DD|EPOCH] [--lid HEX] [--ledger FILE]\n"
           "           [--allow-past] [--dry-run]\n\n"
           "Sign a license key and print it on stdout (one line); summary on stderr.\n"
           "A dated expiry lasts through the end of that day (UTC). Appends a JSON line\n"
           "(lid, sub, tier, dates, kid, sha256 of the key) to the ledger, by default\n"
           "NAME.ledger.jsonl next to the key; no key is printed unless that succeeds.\n"
           "--dry-run prints the payload without signing. --allow-past permits an\n"
           "expiry in the past and --issued-at back- or future-dates (for tests).\n"
           "--lid reuses a license id (tests, re-issue after key rotation).\n"
           "Features: batches notifications reliable_fetch expiring_jobs (pro);\n"
           "rate_limit unique_jobs periodic encryption (enterprise).\n",
           prog);
}

#define ISSUE_GO (-1) /* an issue_* step's "carry on"; anything else is the exit status */

/* Everything `issue` was asked for, parsed and checked. */
typedef struct issue_args {
    const char *keypath, *sub, *tier_s, *expires, *features, *grace_s, *email, *note;
    const char *procs_s, *upd_s, *iat_s, *lid_s, *ledger; /* argv strings (borrowed) */
    int allow_past, dry_run;
    dray_license_tier tier;
    uint32_t feats;
    int64_t iat, exp, upd, now; /* Unix seconds; exp 0: perpetual, upd 0: none */
    long grace, procs;          /* grace in days; procs 0: unlimited */
    char ledger_buf[4096];      /* the default ledger path, when ledger points here */
} issue_args;

/* Reads issue's options into *a (strings borrowed from argv). ISSUE_GO, 0
 * after --help, or EX_USAGE with the complaint printed. */
static int
issue_parse(int argc, char **argv, issue_args *a)
{
    const char *v;
    for (int i = 1; i < argc; i++) {
        const char **slot = NULL;
        if (is_help(argv[i])) {
            issue_help();
            return 0;
        } else if (strcmp(argv[i], "--allow-past") == 0) {
            a->allow_past = 1;
            continue;
        } else if (strcmp(argv[i], "--dry-run") == 0) {
            a->dry_run = 1;
            continue;
        }
        if (opt(argc, argv, &i, "--key", &v))
            slot = &a->keypath;
        else if (opt(argc, argv, &i, "--sub", &v))
            slot = &a->sub;
        else if (opt(argc, argv, &i, "--tier", &v))
            slot = &a->tier_s;
        else if (opt(argc, argv, &i, "--expires", &v))
            slot = &a->expires;
        else if (opt(argc, argv, &i, "--features", &v))
            slot = &a->features;
        else if (opt(argc, argv, &i, "--grace", &v))
            slot = &a->grace_s;
        else if (opt(argc, argv, &i, "--email", &v))
            slot = &a->email;
        else if (opt(argc, argv, &i, "--note", &v))
            slot = &a->note;
        else if (opt(argc, argv, &i, "--procs", &v))
            slot = &a->procs_s;
        else if (opt(argc, argv, &i, "--updates-until", &v))
            slot = &a->upd_s;
        else if (opt(argc, argv, &i, "--issued-at", &v))
            slot = &a->iat_s;
        else if (opt(argc, argv, &i, "--lid", &v))
            slot = &a->lid_s;
        else if (opt(argc, argv, &i, "--ledger", &v))
            slot = &a->ledger;
        else
            return usage_error("issue", "unknown argument");
        if (v == NULL)
            return usage_error("issue", "option needs a value");
        *slot = v;
    }
    return ISSUE_GO;
}

/* Validates and converts the options in *a (tier, dates, limits, lid).
 * ISSUE_GO, EX_USAGE with the complaint printed, or EX_FAIL. */
static int
issue_check(issue_args *a)
{
    char d1[DRAY__LICENSE_DATE_BYTES];
    if (a->keypath == NULL || a->sub == NULL || a->tier_s == NULL || a->expires == NULL)
        return usage_error("issue", "--key, --sub, --tier and --expires are required");
    if (a->sub[0] == '\0' || !valid_text(a->sub, DRAY_LICENSE_SUB_MAX))
        return usage_error("issue", "--sub must be 1-200 bytes without control characters");
    if ((a->email && !valid_text(a->email, DRAY_LICENSE_EMAIL_MAX)) ||
        (a->note && !valid_text(a->note, DRAY_LICENSE_NOTE_MAX)))
        return usage_error("issue",
                           "--email (254) or --note (200) too long or has control characters");
    if (dray_license_tier_parse(a->tier_s, &a->tier) != 0)
        return usage_error("issue", "--tier must be pro or enterprise");
    if (strcmp(a->expires, "never") != 0 && parse_until(a->expires, &a->exp) != 0)
        return usage_error("issue", "--expires must be YYYY-MM-DD or never");
    if (a->features && parse_features(a->features, a->tier, &a->feats) != 0)
        return EX_USAGE;
    if (a->grace_s && parse_long(a->grace_s, 0, DRAY_LICENSE_MAX_GRACE, &a->grace) != 0)
        return usage_error("issue", "--grace must be 0-3650 days");
    if (a->procs_s && parse_long(a->procs_s, 1, DRAY_LICENSE_MAX_PROCS, &a->procs) != 0)
        return usage_error("issue", "--procs must be 1-1000000");
    if (a->upd_s && parse_until(a->upd_s, &a->upd) != 0)
        return usage_error("issue", "--updates-until must be YYYY-MM-DD");
    a->iat = a->now;
    if (a->iat_s && dray__license_parse_date(a->iat_s, &a->iat) != 0)
        return usage_error("issue", "--issued-at must be YYYY-MM-DD or Unix seconds");
    if (a->lid_s && (strlen(a->lid_s) == 0 || strlen(a->lid_s) > DRAY_LICENSE_LID_MAX ||
                     strspn(a->lid_s, "0123456789abcdefABCDEF") != strlen(a->lid_s)))
        return usage_error("issue", "--lid must be 1-64 hex characters");
    if (a->exp != 0 && a->exp <= a->now && !a->allow_past) {
        dray__license_format_date(a->exp, d1);
        fprintf(stderr, "%s issue: expiry %s is in the past (use --allow-past for test keys)\n",
                prog, d1);
        return EX_USAGE;
    }
    if (a->exp != 0 && a->exp <= a->iat)
        return usage_error("issue", "--expires is not after the issue date");
    if (sodium_init() < 0)
        return EX_FAIL;
    return ISSUE_GO;
}

/* Builds the payload for lid and kid into *out (a new reference: the caller
 * decrefs it, also on failure). ISSUE_GO, or EX_USAGE for text jansson
 * refuses (not UTF-8), with the complaint printed. */
static int
issue_payload(const issue_args *a, const char *kid, const char *lid, json_t **out)
{
    json_t *payload =
        json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:i}", "kid", kid, "lid", lid, "sub", a->sub,
                  "tier", dray_license_tier_name(a->tier), "iat", (json_int_t)a->iat, "exp",
                  (json_int_t)a->exp, "grace", (int)a->grace);
    *out = payload;
    if (payload == NULL) {
        fprintf(stderr, "%s issue: --sub, --email and --note must be UTF-8\n", prog);
        return EX_USAGE;
    }
    if (a->feats) {
        json_t *arr = json_array();
        for (unsigned bit = 0; bit < 32; bit++)
            if (a->feats & (1u << bit))
                json_array_append_new(arr, json_string(dray_license_feature_name(1u << bit)));
        json_object_set_new(payload, "features", arr);
    }
    if ((a->email && json_object_set_new(payload, "email", json_string(a->email)) != 0) ||
        (a->note && json_object_set_new(payload, "note", json_string(a->note)) != 0)) {
        fprintf(stderr, "%s issue: --email and --note must be UTF-8\n", prog);
        return EX_USAGE;
    }
    if (a->procs)
        json_object_set_new(payload, "procs", json_integer(a->procs));
    if (a->upd)
        json_object_set_new(payload, "upd", json_integer(a->upd));
    return ISSUE_GO;
}

/* Asks for the passphrase, opens the secret key and signs json into key
 * (KEY_BUF bytes), then checks the key with the modules' verifier before
 * anyone sees it. ISSUE_GO or EX_FAIL (printed); the secret key is wiped. */
static int
issue_sign(const issue_args *a, const char *json, unsigned char pk[DRAY_LICENSE_PK_BYTES],
           const char *kid, char key[KEY_BUF])
{
    unsigned char sk[DRAY__LICENSE_SK_BYTES];
    char pass[PASS_MAX], err[DRAY__LICENSE_ERR_BYTES];
    int rc = EX_FAIL;

    if (read_passphrase(pass, sizeof pass, 0) != 0)
        return EX_FAIL;
    int r = dray__license_read_secret(a->keypath, pass, strlen(pass), sk, pk, err, sizeof err);
    sodium_memzero(pass, sizeof pass);
    if (r != 0) {
        fprintf(stderr, "%s issue: %s\n", prog, err);
        goto out;
    }
    if (dray__license_sign(sk, json, strlen(json), key, KEY_BUF) != 0) {
        fprintf(stderr, "%s issue: the key would exceed %d characters; shorten --sub/--note\n",
                prog, DRAY_LICENSE_MAX_BYTES);
        goto out;
    }
    dray_license_trusted_key tk;
    dray__license_keyring ring = {&tk, 1, NULL, 0, 0};
    dray_license_info info;
    memcpy(tk.kid, kid, sizeof tk.kid);
    memcpy(tk.pk, pk, sizeof tk.pk);
    if (dray__license_verify_with(&ring, key, strlen(key), a->iat, &info) != 0 || !info.verified) {
        fprintf(stderr, "%s issue: internal error: the new key does not verify\n", prog);
        goto out;
    }
    rc = ISSUE_GO;
out:
    sodium_memzero(sk, sizeof sk);
    return rc;
}

/* Appends payload plus issue time and the key's SHA-256 to the ledger (the
 * --ledger file, else NAME.ledger.jsonl next to the key; a->ledger is set to
 * the path used). ISSUE_GO, or EX_FAIL (printed): then no key is issued. */
static int
issue_ledger(issue_args *a, const json_t *payload, const char *key)
{
    char sha[65];
    if (a->ledger == NULL) {
        size_t n = strlen(a->keypath);
        if (n > 4 && strcmp(a->keypath + n - 4, ".key") == 0)
            n -= 4;
        snprintf(a->ledger_buf, sizeof a->ledger_buf, "%.*s.ledger.jsonl", (int)n, a->keypath);
        a->ledger = a->ledger_buf;
    }
    fingerprint(key, strlen(key), sha);
    json_t *line = json_deep_copy(payload);
    json_object_set_new(line, "issued", json_integer(a->now));
    json_object_set_new(line, "key_sha256", json_string(sha));
    int rc = ISSUE_GO;
    if (line == NULL || append_ledger(a->ledger, line) != 0) {
        char eb[DRAY__LICENSE_ERRNO_BYTES];
        fprintf(stderr, "%s issue: cannot append to ledger %s: %s; no key issued\n", prog,
                a->ledger, dray__license_syserr(errno, eb));
        rc = EX_FAIL;
    }
    json_decref(line);
    return rc;
}

/* Prints key on stdout and the one-line summary on stderr. Cannot fail. */
static void
issue_print(const issue_args *a, const char *key, const char *lid, const char *kid)
{
    char d1[DRAY__LICENSE_DATE_BYTES], d2[DRAY__LICENSE_DATE_BYTES];
    printf("%s\n", key);
    fflush(stdout);
    dray__license_format_date(a->exp, d1);
    dray__license_format_date(a->exp + a->grace * 86400, d2);
    char d3[16] = "";
    if (a->upd)
        dray__license_format_date(a->upd, d3);
    fprintf(stderr, "%s: issued license %s to %s: %s, %s%s%s%s%s%s; kid %s; ledger %s\n", prog, lid,
            a->sub, dray_license_tier_name(a->tier), a->exp ? "expires " : "perpetual",
            a->exp ? d1 : "", a->exp ? ", grace until " : "", a->exp ? d2 : "",
            a->upd ? ", updates until " : "", a->upd ? d3 : "", kid, a->ledger);
}

/* `dray-license issue`: parse, check, build the payload, sign, record in the
 * ledger, print. Returns the exit status (0, EX_USAGE, EX_FAIL). */
static int
cmd_issue(int argc, char **argv)
{
    issue_args a;
    unsigned char pk[DRAY_LICENSE_PK_BYTES], rnd[16];
    char kid[DRAY_LICENSE_KID_BYTES], lid[DRAY_LICENSE_LID_MAX + 1];
    char err[DRAY__LICENSE_ERR_BYTES], key[KEY_BUF];
    json_t *payload = NULL;
    char *json = NULL;
    int rc;

    memset(&a, 0, sizeof a);
    a.grace = DRAY_LICENSE_DEFAULT_GRACE;
    a.now = (int64_t)time(NULL);
    if ((rc = issue_parse(argc, argv, &a)) != ISSUE_GO || (rc = issue_check(&a)) != ISSUE_GO)
        return rc;

    if (a.lid_s) {
        snprintf(lid, sizeof lid, "%s", a.lid_s);
    } else {
        randombytes_buf(rnd, sizeof rnd);
        sodium_bin2hex(lid, sizeof lid, rnd, sizeof rnd);
    }
    if (dray__license_read_secret(a.keypath, NULL, 0, NULL, pk, err, sizeof err) != 0) {
        fprintf(stderr, "%s issue: %s\n", prog, err);
        return EX_FAIL;
    }
    dray__license_kid(pk, kid);

    if ((rc = issue_payload(&a, kid, lid, &payload)) != ISSUE_GO)
        goto out;
    rc = EX_FAIL;
    json = json_dumps(payload, JSON_COMPACT | JSON_SORT_KEYS);
    if (json == NULL)
        goto out;
    if (a.dry_run) {
        printf("%s\n", json);
        fprintf(stderr, "%s issue: dry run: payload above, nothing signed, ledger untouched\n",
                prog);
        rc = 0;
        goto out;
    }
    if ((rc = issue_sign(&a, json, pk, kid, key)) != ISSUE_GO ||
        (rc = issue_ledger(&a, payload, key)) != ISSUE_GO)
        goto out;
    issue_print(&a, key, lid, kid);
    rc = 0;

out:
    json_decref(payload);
    free(json);
    return rc;
}

/* ---- verify -------------------------------------------------------------- */

static void
verify_help(void)
{
    printf("usage: %s verify [--pub FILE]... [--revoked FILE]... [--now YYYY-MM-DD|EPOCH]\n"
           "           [--tier pro|enterprise] [--feature NAME] KEY|-\n\n"
           "Verify a key exactly as a module does and print its state and fields.\n"
           "Without --pub, trusts the keys compiled into this build (what a shipped\n"
           "module trusts); with --pub, only those public keys. --revoked adds deny-list\n"
           "files to the compiled-in one. --tier/--feature check an entitlement.\n"
           "Exit: 0 usable (valid, expiring, or in grace: warning on stderr),\n"
           "1 bad signature or unknown key, 2 malformed, 3 lapsed (expired past grace)\n"
           "or build newer than the key's updates, 4 not yet valid, 5 revoked,\n"
           "6 tier/feature not covered, 64 usage, 70 other failure.\n",
           prog);
}

static int
cmd_verify(int argc, char **argv)
{
    static dray_license_trusted_key keys[MAX_PUBS];
    static dray__license_lid lids[MAX_LIDS];
    static const char *lidp[MAX_LIDS];
    const char *keyarg = NULL, *v, *tier_s = NULL, *feature_s = NULL;
    char err[DRAY__LICENSE_ERR_BYTES], msg[DRAY_LICENSE_MSG_BYTES];
    static char text[DRAY_LICENSE_MAX_INPUT + 2];
    size_t npub = 0, nlids = 0, i;
    int64_t now = (int64_t)time(NULL);
    dray_license_tier need = DRAY_LICENSE_TIER_NONE;
    uint32_t feature = 0;
    dray__license_keyring ring;
    dray_license_info info;
    long len;
    int a, rc;

    for (i = 0; i < dray_license_revoked_lids_count && nlids < MAX_LIDS; i++)
        snprintf(lids[nlids++].lid, sizeof lids[0].lid, "%s", dray_license_revoked_lids[i]);
    for (a = 1; a < argc; a++) {
        if (is_help(argv[a])) {
            verify_help();
            return 0;
        } else if (opt(argc, argv, &a, "--pub", &v)) {
            if (v == NULL || npub == MAX_PUBS)
                return usage_error("verify", "--pub needs a file (at most 16)");
            if (dray__license_read_pub(v, keys[npub].pk, err, sizeof err) != 0) {
                fprintf(stderr, "%s verify: %s\n", prog, err);
                return EX_USAGE;
            }
            dray__license_kid(keys[npub].pk, keys[npub].kid);
            npub++;
        } else if (opt(argc, argv, &a, "--revoked", &v)) {
            if (v == NULL)
                return usage_error("verify", "--revoked needs a file");
            if (dray__license_read_lids(v, lids, MAX_LIDS, &nlids, err, sizeof err) != 0) {
                fprintf(stderr, "%s verify: %s\n", prog, err);
                return EX_USAGE;
            }
        } else if (opt(argc, argv, &a, "--now", &v)) {
            if (v == NULL || dray__license_parse_date(v, &now) != 0)
                return usage_error("verify", "--now must be YYYY-MM-DD or Unix seconds");
        } else if (opt(argc, argv, &a, "--tier", &v)) {
            if ((tier_s = v) == NULL || dray_license_tier_parse(v, &need) != 0)
                return usage_error("verify", "--tier must be pro or enterprise");
        } else if (opt(argc, argv, &a, "--feature", &v)) {
            if ((feature_s = v) == NULL || dray_license_feature_parse(v, &feature) != 0)
                return usage_error("verify", "unknown --feature");
        } else if (keyarg == NULL && (argv[a][0] != '-' || strcmp(argv[a], "-") == 0)) {
            keyarg = argv[a];
        } else {
            return usage_error("verify", "unknown argument");
        }
    }
    if (keyarg == NULL)
        return usage_error("verify", "KEY or - is required");
    if ((len = read_key(keyarg, text, sizeof text)) < 0) {
        fprintf(stderr, "%s verify: cannot read the key\n", prog);
        return EX_FAIL;
    }
    for (i = 0; i < nlids; i++)
        lidp[i] = lids[i].lid;
    ring.keys = npub ? keys : dray_license_trusted_keys;
    ring.nkeys = npub ? npub : dray_license_trusted_keys_count;
    ring.revoked = lidp;
    ring.nrevoked = nlids;
    ring.build_time = dray_license_build_time;

    rc = dray__license_verify_with(&ring, text, (size_t)len, now, &info);
    if (rc == 0 && (tier_s || feature_s))
        rc = dray_license_check(&info, need, feature);
    dray_license_describe(rc, &info, msg, sizeof msg);
    printf("%s: %s\n", rc == 0 ? "OK" : "REFUSED", msg);
    if (info.verified) {
        print_fields(stdout, &info);
        if (info.revoked)
            printf("revoked       yes\n");
    }
    if (rc == 0 && info.state == DRAY_LICENSE_GRACE)
        fprintf(stderr, "%s verify: WARNING: %s\n", prog, msg);
    else if (rc == 0 && info.state == DRAY_LICENSE_EXPIRING)
        fprintf(stderr, "%s verify: warning: %s\n", prog, msg);
    sodium_memzero(text, sizeof text);
    return exit_code(rc);
}

/* ---- inspect ------------------------------------------------------------- */

static int
cmd_inspect(int argc, char **argv)
{
    const char *keyarg = NULL, *v;
    static char text[DRAY_LICENSE_MAX_INPUT + 2];
    char msg[DRAY_LICENSE_MSG_BYTES], sha[65];
    int64_t now = (int64_t)time(NULL);
    dray_license_info info, vinfo;
    size_t i;
    long len;
    int a, rc, known = 0;

    for (a = 1; a < argc; a++) {
        if (is_help(argv[a])) {
            printf("usage: %s inspect [--now YYYY-MM-DD|EPOCH] KEY|-\n\n"
                   "Decode a key WITHOUT verifying its signature (for support: keys pasted by\n"
                   "customers). Shows the fields, days to expiry and grace end, the kid and\n"
                   "whether this build trusts it, and the sha256 fingerprint the ledger\n"
                   "records. Never proof of anything: use verify for that.\n"
                   "Exit: 0 decoded, 2 malformed, 64 usage.\n",
                   prog);
            return 0;
        } else if (opt(argc, argv, &a, "--now", &v)) {
            if (v == NULL || dray__license_parse_date(v, &now) != 0)
                return usage_error("inspect", "--now must be YYYY-MM-DD or Unix seconds");
        } else if (keyarg == NULL && (argv[a][0] != '-' || strcmp(argv[a], "-") == 0)) {
            keyarg = argv[a];
        } else {
            return usage_error("inspect", "unknown argument");
        }
    }
    if (keyarg == NULL)
        return usage_error("inspect", "KEY or - is required");
    if ((len = read_key(keyarg, text, sizeof text)) < 0)
        return EX_FAIL;

    printf("=== UNVERIFIED: decoded without checking the signature; do not trust these fields "
           "===\n");
    rc = dray__license_decode_unverified(text, (size_t)len, now, &info);
    if (rc != 0) {
        dray_license_describe(rc, &info, msg, sizeof msg);
        printf("cannot decode: %s\n", msg);
        return exit_code(rc) == EX_MALFORMED ? EX_MALFORMED : EX_FAIL;
    }
    fingerprint(text, (size_t)len, sha);
    print_fields(stdout, &info);
    for (i = 0; i < dray_license_trusted_keys_count; i++)
        if (strcmp(info.kid, dray_license_trusted_keys[i].kid) == 0)
            known = 1;
    printf("kid trusted   %s\n", known ? "yes, by this build" : "NO, not by this build");
    printf("sha256        %s\n", sha);
    rc = dray_license_verify(text, (size_t)len, now, &vinfo);
    dray_license_describe(rc, &vinfo, msg, sizeof msg);
    printf("this build    %s: %s\n", rc == 0 ? "OK" : "REFUSED", msg);
    sodium_memzero(text, sizeof text);
    return 0;
}

/* ---- main ---------------------------------------------------------------- */

static void
main_help(FILE *f)
{
    fprintf(f,
            "usage: %s COMMAND [OPTIONS]\n\n"
            "  keygen   create a signing keypair (NAME.key encrypted, NAME.pub)\n"
            "  issue    sign a license key, record it in the ledger\n"
            "  verify   verify a key as a module would (exit code = verdict)\n"
            "  inspect  decode a key without verifying (UNVERIFIED)\n\n"
            "`%s COMMAND --help` for details. Passphrase: $DRAY_LICENSE_PASSPHRASE or a prompt.\n",
            prog, prog);
}

int
main(int argc, char **argv)
{
    if (sodium_init() < 0) {
        fprintf(stderr, "%s: libsodium failed to initialise\n", prog);
        return EX_FAIL;
    }
    if (argc < 2) {
        main_help(stderr);
        return EX_USAGE;
    }
    if (is_help(argv[1]) || strcmp(argv[1], "help") == 0) {
        main_help(stdout);
        return 0;
    }
    if (strcmp(argv[1], "keygen") == 0)
        return cmd_keygen(argc - 1, argv + 1);
    if (strcmp(argv[1], "issue") == 0)
        return cmd_issue(argc - 1, argv + 1);
    if (strcmp(argv[1], "verify") == 0)
        return cmd_verify(argc - 1, argv + 1);
    if (strcmp(argv[1], "inspect") == 0)
        return cmd_inspect(argc - 1, argv + 1);
    fprintf(stderr, "%s: unknown command \"%s\"\n", prog, argv[1]);
    main_help(stderr);
    return EX_USAGE;
}
