/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* Sidekiq's compressed error_backtrace, read for `dray web` and by the
 * fuzz target tests/fuzz/fuzz_backtrace.c (which compiles web_backtrace.c). */
#ifndef DRAY_CLI_WEB_BACKTRACE_H
#define DRAY_CLI_WEB_BACKTRACE_H

#include <stddef.h>
#include <jansson.h>

/* base64 of zlib-deflated JSON of the lines into a new reference to the
 * array, or NULL when s is not that, or inflates beyond max bytes (a zip
 * bomb) or out of memory. Any thread. */
json_t *web_backtrace_inflate(const char *s, size_t max);

#endif
