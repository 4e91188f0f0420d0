/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * The attack of docs/licensing.md "Swapping the signature check": LD_PRELOAD
 * this library and every Ed25519 signature "verifies", if a module resolves
 * crypto_sign_verify_detached from outside itself. Modules link libsodium
 * statically with hidden symbols, so this must change nothing
 * (test_cli_license.sh, "forged key under LD_PRELOAD").
 */
#include <stddef.h>

int crypto_sign_verify_detached(const unsigned char *sig, const unsigned char *m,
                                unsigned long long mlen, const unsigned char *pk);

/* Accepts every signature. Cannot fail. */
__attribute__((visibility("default"))) int
crypto_sign_verify_detached(const unsigned char *sig, const unsigned char *m,
                            unsigned long long mlen, const unsigned char *pk)
{
    (void)sig;
    (void)m;
    (void)mlen;
    (void)pk;
    return 0;
}
