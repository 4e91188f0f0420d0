#!/bin/sh
# SPDX-License-Identifier: LicenseRef-dray-commercial
#
# dray-license end to end: keygen, issue, verify, inspect; exit codes,
# refusal to overwrite, the ledger. TAP-style output; exit 1 on any failure.
#
# usage: test_license_cli.sh PATH/TO/dray-license
set -u
TOOL=${1:?usage: test_license_cli.sh PATH/TO/dray-license}
T=$(mktemp -d "${TMPDIR:-/tmp}/dray-license-cli.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT INT TERM
n=0
fails=0
export DRAY_LICENSE_PASSPHRASE=cli-test-passphrase

# expect CODE DESCRIPTION COMMAND...: stdout in $T/out, stderr in $T/err
expect() {
    want=$1 desc=$2
    shift 2
    n=$((n + 1))
    "$@" >"$T/out" 2>"$T/err"
    got=$?
    if [ "$got" -eq "$want" ]; then
        echo "ok $n - $desc"
    else
        echo "not ok $n - $desc: exit $got, want $want"
        sed 's/^/#   /' "$T/out" "$T/err"
        fails=$((fails + 1))
    fi
}

# check DESCRIPTION COMMAND...: passes when COMMAND succeeds
check() {
    desc=$1
    shift
    n=$((n + 1))
    if "$@"; then
        echo "ok $n - $desc"
    else
        echo "not ok $n - $desc"
        fails=$((fails + 1))
    fi
}

has() { grep -q -- "$1" "$2"; }
lines() { if [ -f "$1" ]; then wc -l <"$1" | tr -d ' '; else echo 0; fi; }

LEDGER=$T/vendor.ledger.jsonl
PUB=$T/vendor.pub

# ---- keygen ------------------------------------------------------------------
expect 0 "keygen creates a keypair" "$TOOL" keygen --name vendor --dir "$T"
KID=$(cat "$T/out")
check "keygen prints an 8-hex kid" sh -c "printf '%s' '$KID' | grep -Eqx '[0-9a-f]{8}'"
check "secret key is mode 0600" test "$(stat -c %a "$T/vendor.key")" = 600
check "public key is signify style" sh -c "head -1 '$PUB' | grep -q '^untrusted comment:' && test \$(wc -l <'$PUB') -eq 2"
check "public key names the kid" has "$KID" "$PUB"
cp "$T/vendor.key" "$T/key.orig"
expect 70 "keygen refuses to overwrite" "$TOOL" keygen --name vendor --dir "$T"
check "refusal says why" has "refusing to overwrite" "$T/err"
check "existing key untouched" cmp -s "$T/vendor.key" "$T/key.orig"
expect 0 "keygen of a second (untrusted) key" "$TOOL" keygen --name other --dir "$T"
expect 64 "keygen without --name" "$TOOL" keygen --dir "$T"

# ---- issue ---------------------------------------------------------------------
expect 0 "issue an enterprise key" "$TOOL" issue --key "$T/vendor.key" --sub "ACME Corp" \
    --tier enterprise --expires 2030-12-31 --email ops@acme.example --note "PO 1234" --procs 50
KEY=$(cat "$T/out")
check "key is one dray1 line" sh -c "test \$(wc -l <'$T/out') -eq 1 && grep -q '^dray1\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\$' '$T/out'"
check "summary on stderr" has "issued license" "$T/err"
expect 0 "issue a perpetual key with updates until" "$TOOL" issue --key "$T/vendor.key" \
    --sub "ACME Corp" --tier pro --expires never --updates-until 2031-12-31 --ledger "$T/upd.ledger"
check "summary says updates until" has "pro, perpetual, updates until 2031-12-31" "$T/err"
check "ledger has one line" test "$(lines "$LEDGER")" = 1
SHA=$(printf '%s' "$KEY" | sha256sum | cut -d' ' -f1)
check "ledger records the key's sha256" has "\"key_sha256\":\"$SHA\"" "$LEDGER"
check "ledger records lid, sub, tier, kid" sh -c "grep -q '\"lid\":\"[0-9a-f]\{32\}\"' '$LEDGER' && grep -q '\"sub\":\"ACME Corp\"' '$LEDGER' && grep -q '\"tier\":\"enterprise\"' '$LEDGER' && grep -q '\"kid\":\"$KID\"' '$LEDGER'"
check "ledger never holds the key" sh -c "! grep -q 'dray1\.' '$LEDGER'"

expect 0 "issue a pro key with features to a custom ledger" "$TOOL" issue --key "$T/vendor.key" \
    --sub "Beta LLC" --tier pro --expires 2030-12-31 --features reliable_fetch,batches \
    --grace 14 --ledger "$T/custom.jsonl"
PRO=$(cat "$T/out")
check "custom ledger used" test "$(lines "$T/custom.jsonl")" = 1
check "default ledger unchanged" test "$(lines "$LEDGER")" = 1

expect 0 "issue a perpetual key" "$TOOL" issue --key "$T/vendor.key" --sub "Gamma" --tier pro --expires never
PERP=$(cat "$T/out")

expect 64 "issue refuses a past expiry" "$TOOL" issue --key "$T/vendor.key" --sub X --tier pro --expires 2020-01-01
check "past expiry refusal says why" has "in the past" "$T/err"
expect 64 "issue refuses an unknown feature" "$TOOL" issue --key "$T/vendor.key" --sub X --tier pro --expires 2030-01-01 --features batches,teleport
expect 64 "issue refuses an enterprise feature on a pro key" "$TOOL" issue --key "$T/vendor.key" --sub X --tier pro --expires 2030-01-01 --features rate_limit
expect 64 "issue refuses an unknown tier" "$TOOL" issue --key "$T/vendor.key" --sub X --tier gold --expires 2030-01-01
expect 64 "issue without --sub" "$TOOL" issue --key "$T/vendor.key" --tier pro --expires 2030-01-01
expect 70 "issue with a wrong passphrase" env DRAY_LICENSE_PASSPHRASE=wrong "$TOOL" issue --key "$T/vendor.key" --sub X --tier pro --expires 2030-01-01
check "wrong passphrase says so" has "wrong passphrase" "$T/err"
expect 0 "issue --dry-run needs no passphrase" env -u DRAY_LICENSE_PASSPHRASE "$TOOL" issue --key "$T/vendor.key" --sub "Dry Run" --tier pro --expires 2030-01-01 --dry-run
check "dry run prints the payload" has '"sub":"Dry Run"' "$T/out"
check "dry run prints no key" sh -c "! grep -q '^dray1\.' '$T/out'"
check "failed and dry runs leave the ledger alone" test "$(lines "$LEDGER")" = 2

# ---- verify --------------------------------------------------------------------
expect 0 "verify a valid key" "$TOOL" verify --pub "$PUB" "$KEY"
check "verify names licensee, tier, expiry" has "OK: licensed to ACME Corp (enterprise, expires 2030-12-31)" "$T/out"
expect 0 "verify from stdin" sh -c "printf '%s\n' '$KEY' | '$TOOL' verify --pub '$PUB' -"
expect 0 "verify a key broken across lines" sh -c "printf '%s' '$KEY' | fold -w 60 | '$TOOL' verify --pub '$PUB' -"
expect 0 "verify a perpetual key" "$TOOL" verify --pub "$PUB" "$PERP"
check "perpetual says so" has "perpetual" "$T/out"
expect 1 "verify against another key: unknown kid" "$TOOL" verify --pub "$T/other.pub" "$KEY"
check "unknown kid message names both kids" has "signed by unknown key $KID; this build trusts" "$T/out"
expect 1 "verify with the compiled-in table (does not trust the CLI test key)" "$TOOL" verify "$KEY"
C=$(printf '%s' "$KEY" | cut -c20)
if [ "$C" = A ]; then R=B; else R=A; fi
BAD=$(printf '%s' "$KEY" | cut -c1-19)$R$(printf '%s' "$KEY" | cut -c21-)
expect 1 "verify a tampered key: bad signature" "$TOOL" verify --pub "$PUB" "$BAD"
check "tampered message" has "signature is invalid" "$T/out"
expect 2 "verify a malformed key" "$TOOL" verify --pub "$PUB" "dray1.abc"
expect 2 "verify a truncated key" "$TOOL" verify --pub "$PUB" "$(printf '%s' "$KEY" | cut -c1-100)"
expect 2 "verify an empty key" "$TOOL" verify --pub "$PUB" ""
expect 6 "verify --tier enterprise on a pro key" "$TOOL" verify --pub "$PUB" --tier enterprise "$PRO"
expect 0 "verify --tier pro on an enterprise key" "$TOOL" verify --pub "$PUB" --tier pro "$KEY"
expect 6 "verify --feature outside the list" "$TOOL" verify --pub "$PUB" --tier pro --feature expiring_jobs "$PRO"
expect 0 "verify --feature in the list" "$TOOL" verify --pub "$PUB" --tier pro --feature batches "$PRO"

expect 0 "issue an already-expired key with --allow-past" "$TOOL" issue --key "$T/vendor.key" \
    --sub "Old Co" --tier pro --issued-at 2020-01-01 --expires 2020-06-30 --allow-past
OLD=$(cat "$T/out")
expect 3 "verify a lapsed key" "$TOOL" verify --pub "$PUB" "$OLD"
check "lapsed message has both dates" has "expired on 2020-06-30, grace ended 2020-07-30" "$T/out"
expect 0 "verify in grace (--now)" "$TOOL" verify --pub "$PUB" --now 2020-07-15 "$OLD"
check "grace warns on stderr" has "WARNING" "$T/err"
expect 0 "verify before expiry (--now)" "$TOOL" verify --pub "$PUB" --now 2020-03-01 "$OLD"

FUTURE=$(($(date +%s) + 10 * 86400))
expect 0 "issue a future-dated key" "$TOOL" issue --key "$T/vendor.key" --sub "Future" --tier pro \
    --issued-at "$FUTURE" --expires 2099-12-31
expect 4 "verify a not-yet-valid key" "$TOOL" verify --pub "$PUB" "$(cat "$T/out")"
check "not-yet-valid message" has "check the system clock" "$T/out"

LID=7e57c11000000000000000000000beef
expect 0 "issue a key with a fixed lid" "$TOOL" issue --key "$T/vendor.key" --sub "Leaky" --tier pro \
    --expires 2030-01-01 --lid "$LID"
REV=$(cat "$T/out")
printf '# test deny-list\n%s  # leaked\n' "$LID" >"$T/revoked.txt"
expect 5 "verify a revoked key" "$TOOL" verify --pub "$PUB" --revoked "$T/revoked.txt" "$REV"
check "revoked message names the lid" has "license $LID for Leaky has been revoked" "$T/out"
expect 0 "the same key without the deny-list" "$TOOL" verify --pub "$PUB" "$REV"

expect 64 "verify without a key" "$TOOL" verify --pub "$PUB"
expect 64 "verify with an unreadable --pub" "$TOOL" verify --pub "$T/nope.pub" "$KEY"
expect 64 "verify with a bad --now" "$TOOL" verify --pub "$PUB" --now tomorrow "$KEY"

# ---- inspect -------------------------------------------------------------------
expect 0 "inspect decodes without verifying" "$TOOL" inspect "$KEY"
check "inspect shows the UNVERIFIED banner" has "UNVERIFIED" "$T/out"
check "inspect shows the fields" has "ACME Corp" "$T/out"
check "inspect fingerprint matches the ledger" has "$SHA" "$T/out"
check "inspect says the kid is not trusted by this build" has "NO, not by this build" "$T/out"
L=${#KEY}
C=$(printf '%s' "$KEY" | cut -c$((L - 10)))
if [ "$C" = A ]; then R=B; else R=A; fi
BADSIG=$(printf '%s' "$KEY" | cut -c1-$((L - 11)))$R$(printf '%s' "$KEY" | cut -c$((L - 9))-)
expect 1 "verify a key with a damaged signature" "$TOOL" verify --pub "$PUB" "$BADSIG"
expect 0 "inspect a key with a damaged signature still decodes" "$TOOL" inspect "$BADSIG"
check "inspect shows this build refuses it" has "this build    REFUSED" "$T/out"
expect 0 "inspect from stdin" sh -c "printf '%s' '$KEY' | '$TOOL' inspect -"
expect 2 "inspect a malformed key" "$TOOL" inspect "dray1.abc"

# ---- usage and help ------------------------------------------------------------
expect 64 "no command" "$TOOL"
expect 64 "unknown command" "$TOOL" frobnicate
expect 64 "unknown option" "$TOOL" verify --bogus "$KEY"
for c in "" keygen issue verify inspect; do
    # shellcheck disable=SC2086
    expect 0 "--help ${c:-(main)}" "$TOOL" $c --help
    check "--help ${c:-(main)} prints usage" has "usage:" "$T/out"
done

check "ledger: one line per issued key" test "$(lines "$LEDGER")" = 5

echo "1..$n"
if [ "$fails" -ne 0 ]; then
    echo "# $fails of $n failed"
    exit 1
fi
echo "# all $n passed"
