/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* Error text: the public code table (dray_strerror, dray_err_name) and the
 * one internal convention for detail (dray__err into a caller's buffer,
 * dray__strerror instead of the thread-unsafe strerror). */
#include <stdio.h>
#include <string.h>

#include "internal.h"

/* dray__err with a va_list (contract in internal.h). */
int
dray__verr(char *errbuf, size_t errlen, int code, const char *fmt, va_list ap)
{
    if (errbuf && errlen)
        vsnprintf(errbuf, errlen, fmt, ap);
    return code;
}

/* Format into errbuf (may be NULL), truncated; returns code. */
int
dray__err(char *errbuf, size_t errlen, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    dray__verr(errbuf, errlen, code, fmt, ap);
    va_end(ap);
    return code;
}

/* GNU strerror_r returns the text (in buf or static); copy it into buf. */
static const char *
from_gnu(const char *text, int errnum, char *buf, size_t n)
{
    if (!text)
        snprintf(buf, n, "error %d", errnum);
    else if (text != buf)
        snprintf(buf, n, "%s", text);
    return buf;
}

/* XSI strerror_r returns 0 with the text in buf, or an error number. */
static const char *
from_xsi(int rc, int errnum, char *buf, size_t n)
{
    if (rc || !buf[0])
        snprintf(buf, n, "error %d", errnum);
    return buf;
}

/* Which strerror_r libc gave us is decided by its return type, so the same
 * source builds against either (the other branch is never called). */
#define DRAY__STRERROR_R(errnum, buf, n)                                                           \
    _Generic(strerror_r((errnum), (buf), (n)), char *: from_gnu, default: from_xsi)(               \
        strerror_r((errnum), (buf), (n)), (errnum), (buf), (n))

/* errnum's text in buf (never NULL; thread-safe); "" when buf is empty. */
const char *
dray__strerror(int errnum, char *buf, size_t n)
{
    if (!buf || n == 0)
        return "";
    buf[0] = '\0';
    return DRAY__STRERROR_R(errnum, buf, n);
}

#define DRAY__ERRNO_TEXT(name, val, text)                                                          \
    case (val):                                                                                    \
        return text;

/* Text of a DRAY_E* code (static); "unknown error" for others. */
const char *
dray_strerror(int code)
{
    switch (code) {
    case 0:
        return "success";
        DRAY_ERRNO_MAP(DRAY__ERRNO_TEXT)
    default:
        return "unknown error";
    }
}

#define DRAY__ERRNO_NAME(name, val, text)                                                          \
    case (val):                                                                                    \
        return #name;

/* Name of a DRAY_E* code ("ENOMEM"; static); "EUNKNOWN" for others. */
const char *
dray_err_name(int code)
{
    switch (code) {
    case 0:
        return "OK";
        DRAY_ERRNO_MAP(DRAY__ERRNO_NAME)
    default:
        return "EUNKNOWN";
    }
}
