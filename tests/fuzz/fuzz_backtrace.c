/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * Fuzz the reader of Sidekiq's compressed error_backtrace (base64 of
 * zlib-deflated JSON lines) that `dray web` runs on a retry or dead entry
 * anyone with Redis access can write: core/cli/web_backtrace.c.
 *
 * The first byte picks the mode; the rest is the input:
 *   even  the input is the error_backtrace string itself (cut at a NUL);
 *   odd   the input is the inflated text: the target deflates and base64s
 *         it first, so the fuzzer reaches the JSON and the size bound.
 * Invariants:
 *   - the result is NULL or a JSON array;
 *   - odd mode: an array exactly when the text is a JSON array of at most
 *     MAX bytes, and then equal to what json_loadb reads from it;
 *   - an array re-encoded (dumped, deflated, base64) reads back equal;
 *   - nothing leaks (ASan) and nothing writes out of bounds.
 * Shared driver: fuzz_driver.h.
 */
#include <zlib.h>

#include "fuzz_driver.h"
#include "web_backtrace.h"

#define MAX (64 << 10) /* the bound given to the reader: small, so it is reached */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* base64 (with padding) of text deflated with zlib; malloc'ed, NULL on OOM. */
static char *
encode(const unsigned char *text, size_t n)
{
    uLongf zl = compressBound((uLong)n);
    unsigned char *z = malloc(zl ? zl : 1);
    char *out = malloc(zl / 3 * 4 + 8);
    if (!z || !out || compress2(z, &zl, text, (uLong)n, Z_DEFAULT_COMPRESSION) != Z_OK) {
        free(z);
        free(out);
        return NULL;
    }
    size_t k = 0;
    for (size_t i = 0; i < zl; i += 3) {
        unsigned v = (unsigned)z[i] << 16 | (i + 1 < zl ? (unsigned)z[i + 1] << 8 : 0) |
                     (i + 2 < zl ? z[i + 2] : 0);
        out[k++] = b64[v >> 18 & 63];
        out[k++] = b64[v >> 12 & 63];
        out[k++] = i + 1 < zl ? b64[v >> 6 & 63] : '=';
        out[k++] = i + 2 < zl ? b64[v & 63] : '=';
    }
    out[k] = '\0';
    free(z);
    return out;
}

/* An array read back must survive its own re-encoding. */
static void
check_round_trip(const json_t *arr)
{
    char *text = json_dumps(arr, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!text || strlen(text) > MAX) {
        free(text);
        return; /* out of memory, or a dump longer than the bound (escapes grow) */
    }
    char *enc = encode((const unsigned char *)text, strlen(text));
    free(text);
    if (!enc)
        return;
    json_t *again = web_backtrace_inflate(enc, MAX);
    free(enc);
    FUZZ_ASSERT(again && json_equal(arr, again), "an array did not survive re-encoding");
    json_decref(again);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int odd = data[0] & 1;
    const uint8_t *in = data + 1;
    size_t n = size - 1;
    json_t *got, *want = NULL;
    if (odd) {
        char *enc = encode(in, n);
        if (!enc)
            return 0;
        got = web_backtrace_inflate(enc, MAX);
        free(enc);
        json_t *j = n <= MAX ? json_loadb((const char *)in, n, JSON_ALLOW_NUL, NULL) : NULL;
        if (json_is_array(j))
            want = j;
        else
            json_decref(j);
        FUZZ_ASSERT(!got == !want, "inflated text %s a JSON array of at most %d bytes, read %s",
                    want ? "is" : "is not", MAX, got ? "an array" : "nothing");
        FUZZ_ASSERT(!want || json_equal(got, want), "the array read differs from the text");
    } else {
        char *s = malloc(n + 1);
        if (!s)
            return 0;
        memcpy(s, in, n);
        s[n] = '\0';
        got = web_backtrace_inflate(s, MAX);
        free(s);
    }
    FUZZ_ASSERT(!got || json_is_array(got), "the result is not an array");
    if (got)
        check_round_trip(got);
    json_decref(got);
    json_decref(want);
    return 0;
}
