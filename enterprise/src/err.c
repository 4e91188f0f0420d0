/* SPDX-License-Identifier: LicenseRef-dray-commercial */
/* The Enterprise module's error helper (err.h). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "err.h"

int
ent__err(char *err, size_t errlen, int code, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return code;
}

const char *
ent__syserr(int e, char buf[ENT_ERRNO_BYTES])
{
#if defined(__GLIBC__) && defined(_GNU_SOURCE)
    /* GNU strerror_r may return a static string instead of filling buf */
    const char *s = strerror_r(e, buf, ENT_ERRNO_BYTES);
    if (s != buf)
        snprintf(buf, ENT_ERRNO_BYTES, "%s", s);
#else
    if (strerror_r(e, buf, ENT_ERRNO_BYTES))
        snprintf(buf, ENT_ERRNO_BYTES, "error %d", e);
#endif
    return buf;
}
