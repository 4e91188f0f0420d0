/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* Sidekiq's compressed error_backtrace for `dray web` (web_backtrace.h). */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "web_backtrace.h"

static const char b64chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Decode base64 s (stops at '=') into a malloc'ed buffer, *n its length;
 * NULL for a byte outside the alphabet or out of memory. */
static unsigned char *
unbase64(const char *s, size_t *n)
{
    size_t len = strlen(s), o = 0;
    unsigned char *bin = malloc(len / 4 * 3 + 3);
    if (!bin)
        return NULL;
    unsigned acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len && s[i] != '='; i++) {
        const char *p = strchr(b64chars, s[i]);
        if (!p) {
            free(bin);
            return NULL;
        }
        acc = (acc << 6) | (unsigned)(p - b64chars);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            bin[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    *n = o;
    return bin;
}

/* The error_backtrace text as the array of lines (contract in web_backtrace.h). */
json_t *
web_backtrace_inflate(const char *s, size_t max)
{
    size_t o = 0;
    unsigned char *bin = unbase64(s, &o);
    if (!bin || o > UINT_MAX || max > UINT_MAX) {
        free(bin);
        return NULL;
    }
    unsigned char *txt = malloc(max ? max : 1);
    json_t *arr = NULL;
    z_stream z = {0};
    if (txt && inflateInit(&z) == Z_OK) {
        z.next_in = bin;
        z.avail_in = (uInt)o;
        z.next_out = txt;
        z.avail_out = (uInt)max;
        if (inflate(&z, Z_FINISH) == Z_STREAM_END)
            arr = json_loadb((const char *)txt, z.total_out, JSON_ALLOW_NUL, NULL);
        inflateEnd(&z);
    }
    free(txt);
    free(bin);
    if (arr && !json_is_array(arr)) {
        json_decref(arr);
        arr = NULL;
    }
    return arr;
}
