/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* error_backtrace as Sidekiq writes it (compress_backtrace in 7.x/8.x
 * lib/sidekiq/job_retry.rb): Base64.strict_encode64(Zlib::Deflate.deflate(
 * JSON.dump(lines))), for jobs whose payload says "backtrace": true or N. */
#include <execinfo.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include <zlib.h>

#include "server.h"

/* How many backtrace lines job asks for (its "backtrace" field: true, or a
 * count capped at DRAY_BACKTRACE_MAX); 0 for none. */
int
dray__backtrace_want(const dray_job *job)
{
    json_t *v = json_object_get(job->obj, "backtrace");
    if (json_is_true(v))
        return DRAY_BACKTRACE_MAX;
    if (json_is_integer(v) && json_integer_value(v) > 0)
        return json_integer_value(v) > DRAY_BACKTRACE_MAX ? DRAY_BACKTRACE_MAX
                                                          : (int)json_integer_value(v);
    return 0; /* absent, false, 0 or junk: Sidekiq stores none */
}

/* The compressed form of a JSON array of lines, malloc'ed (free()), or NULL. */
static char *
compress_lines(const json_t *arr)
{
    size_t jlen;
    char *json = dray__json_dump(arr, &jlen);
    if (!json)
        return NULL;
    uLongf zlen = compressBound((uLong)jlen);
    unsigned char *z = dray__malloc(zlen);
    char *out = NULL;
    if (z && compress2(z, &zlen, (const unsigned char *)json, (uLong)jlen, Z_DEFAULT_COMPRESSION) ==
                 Z_OK) {
        size_t blen = sodium_base64_ENCODED_LEN(zlen, sodium_base64_VARIANT_ORIGINAL);
        out = malloc(blen);
        if (out)
            sodium_bin2base64(out, blen, z, zlen, sodium_base64_VARIANT_ORIGINAL);
    }
    dray__free(z);
    free(json);
    return out;
}

/* Stores job's error_backtrace (Sidekiq's compressed, base64 form) from the
 * handler's lines, else the captured frames, at most want; 0 or DRAY_ENOMEM. */
int
dray__backtrace_store(dray_job *job, int want, const char *const *lines, size_t nlines,
                      void *const *frames, int nframes)
{
    if (want <= 0)
        return 0;
    json_t *arr = json_array();
    if (!arr)
        return DRAY_ENOMEM;
    if (nlines) {
        for (size_t i = 0; i < nlines && i < (size_t)want; i++) {
            json_t *s = json_string(lines[i]);
            json_array_append_new(arr, s ? s : json_string("(line was not valid utf-8)"));
        }
    } else if (nframes > 0) {
        /* symbolized as far as the binary allows: exported names, else
         * module+offset that addr2line resolves */
        char **sym = backtrace_symbols(frames, nframes);
        for (int i = 0; i < nframes && i < want; i++) {
            json_t *s = sym ? json_string(sym[i]) : NULL;
            if (!s) {
                char hex[32];
                snprintf(hex, sizeof hex, "%p", frames[i]);
                s = json_string(hex);
            }
            json_array_append_new(arr, s);
        }
        free(sym);
    }
    char *b64 = compress_lines(arr);
    json_decref(arr);
    if (!b64)
        return DRAY_ENOMEM;
    int rc = json_object_set_new(job->obj, "error_backtrace", json_string(b64));
    free(b64);
    return rc ? DRAY_ENOMEM : 0;
}
