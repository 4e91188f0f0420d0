/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* TLS transport for rediss:// links. hiredis 0.14 has no TLS, so hiredis
 * keeps the protocol (its output buffer and reply reader) and this file owns
 * the bytes: OpenSSL over the socket hiredis connected, with the same
 * timeouts. redis.c calls these only when a link has an SSL. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <hiredis/sds.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "internal.h"

/* The text of the newest OpenSSL error on this thread, or `dflt`. */
static const char *
ssl_reason(const char *dflt)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    return r ? r : dflt;
}

/* cfg->tls_ctx from the tls_* settings (CA, client cert and key);
 * DRAY_ETLS/DRAY_ENOMEM naming the file and cause in errbuf. */
int
dray__tls_ctx_init(dray__redis_cfg *cfg, char *errbuf, size_t errlen)
{
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx)
        return dray__err(errbuf, errlen, DRAY_ENOMEM,
                         "redis at %s: TLS: cannot create a context: %s", cfg->where,
                         ssl_reason("out of memory"));
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* Report a record as written as soon as it is: after a failed write the
     * output buffer then holds exactly what never reached the socket. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_AUTO_RETRY);
    SSL_CTX_set_verify(ctx, cfg->tls_insecure ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, NULL);
    int rc = 0;
    if (cfg->tls_ca_file || cfg->tls_ca_dir) {
        if (SSL_CTX_load_verify_locations(ctx, cfg->tls_ca_file, cfg->tls_ca_dir) != 1)
            rc = dray__err(errbuf, errlen, DRAY_ETLS, "redis TLS: cannot load CA %s '%s': %s",
                           cfg->tls_ca_file ? "file" : "directory",
                           cfg->tls_ca_file ? cfg->tls_ca_file : cfg->tls_ca_dir,
                           ssl_reason("unreadable"));
    } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
        rc = dray__err(errbuf, errlen, DRAY_ETLS, "redis TLS: cannot load the system CA store: %s",
                       ssl_reason("unknown error"));
    }
    if (!rc && cfg->tls_key && !cfg->tls_cert)
        rc = dray__err(errbuf, errlen, DRAY_ETLS,
                       "redis TLS: a client key was given without a client certificate");
    if (!rc && cfg->tls_cert) {
        const char *key = cfg->tls_key ? cfg->tls_key : cfg->tls_cert;
        if (SSL_CTX_use_certificate_chain_file(ctx, cfg->tls_cert) != 1)
            rc = dray__err(errbuf, errlen, DRAY_ETLS,
                           "redis TLS: cannot load client certificate '%s': %s", cfg->tls_cert,
                           ssl_reason("unreadable"));
        else if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
            rc = ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH
                     ? dray__err(errbuf, errlen, DRAY_ETLS,
                                 "redis TLS: client key '%s' does not match certificate '%s'", key,
                                 cfg->tls_cert)
                     : dray__err(errbuf, errlen, DRAY_ETLS,
                                 "redis TLS: cannot load client key '%s': %s", key,
                                 ssl_reason("unreadable"));
        else if (SSL_CTX_check_private_key(ctx) != 1)
            rc = dray__err(errbuf, errlen, DRAY_ETLS,
                           "redis TLS: client key '%s' does not match certificate '%s'", key,
                           cfg->tls_cert);
    }
    ERR_clear_error();
    if (rc) {
        SSL_CTX_free(ctx);
        return rc;
    }
    cfg->tls_ctx = ctx;
    return 0;
}

/* Free cfg's TLS context (none is fine) and forget it. */
void
dray__tls_ctx_free(dray__redis_cfg *cfg)
{
    SSL_CTX_free(cfg->tls_ctx);
    cfg->tls_ctx = NULL;
}

static int conn_fail(dray__conn *c, const char *fmt, ...) DRAY_PRINTF(2, 3);

/* A failed handshake: DRAY_ECONN on c with "redis at <where>: " and the
 * formatted reason as its text; the OpenSSL error queue is cleared. */
static int
conn_fail(dray__conn *c, const char *fmt, ...)
{
    int n = snprintf(c->errstr, sizeof c->errstr, "redis at %s: ", c->cfg->where);
    va_list ap;
    va_start(ap, fmt);
    if (n >= 0 && (size_t)n < sizeof c->errstr)
        dray__verr(c->errstr + n, sizeof c->errstr - (size_t)n, DRAY_ECONN, fmt, ap);
    va_end(ap);
    c->err = DRAY_ECONN;
    ERR_clear_error();
    return DRAY_ECONN;
}

/* Nonzero when s is an IPv4 or IPv6 address (then no SNI is sent). */
static int
is_ip_literal(const char *s)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

/* TLS on c->ctx's socket within timeout_ms, verifying the name; sets
 * c->ssl. DRAY_ECONN with the cause on c (the caller drops c). */
int
dray__tls_handshake(dray__conn *c, int timeout_ms)
{
    const dray__redis_cfg *cfg = c->cfg;
    const char *name = cfg->tls_server_name ? cfg->tls_server_name : cfg->host;
    ERR_clear_error();
    SSL *ssl = SSL_new(cfg->tls_ctx);
    if (!ssl)
        return conn_fail(c, "TLS: out of memory");
    c->ssl = ssl;
    if (SSL_set_fd(ssl, c->ctx->fd) != 1)
        return conn_fail(c, "TLS: %s", ssl_reason("cannot attach the socket"));
    if (!is_ip_literal(name))
        SSL_set_tlsext_host_name(ssl, name); /* SNI is for names only (RFC 6066) */
    if (!cfg->tls_insecure) {
        int ok = is_ip_literal(name) ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name)
                                     : SSL_set1_host(ssl, name);
        if (ok != 1)
            return conn_fail(c, "TLS: cannot verify against server name '%s'", name);
    }
    if (timeout_ms < 1)
        timeout_ms = 1;
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    redisSetTimeout(c->ctx, tv); /* each handshake read/write waits at most this */
    errno = 0;
    int r = SSL_connect(ssl);
    if (r == 1)
        return 0;
    int saved = errno;
    long v = SSL_get_verify_result(ssl);
    if (v != X509_V_OK)
        return conn_fail(
            c, "TLS certificate verify failed: %s%s%s%s", X509_verify_cert_error_string(v),
            v == X509_V_ERR_HOSTNAME_MISMATCH || v == X509_V_ERR_IP_ADDRESS_MISMATCH
                ? " (expected '"
                : "",
            v == X509_V_ERR_HOSTNAME_MISMATCH || v == X509_V_ERR_IP_ADDRESS_MISMATCH ? name : "",
            v == X509_V_ERR_HOSTNAME_MISMATCH || v == X509_V_ERR_IP_ADDRESS_MISMATCH ? "')" : "");
    int e = SSL_get_error(ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ||
        (e == SSL_ERROR_SYSCALL && (saved == EAGAIN || saved == EWOULDBLOCK)))
        return conn_fail(c,
                         "TLS handshake timed out: no answer in %d ms (a plaintext Redis, or "
                         "not a TLS port?)",
                         timeout_ms);
    if (e == SSL_ERROR_SSL) {
        unsigned long le = ERR_peek_last_error();
        int reason = ERR_GET_REASON(le);
        if (reason == SSL_R_WRONG_VERSION_NUMBER || reason == SSL_R_PACKET_LENGTH_TOO_LONG ||
            reason == SSL_R_UNKNOWN_PROTOCOL || reason == SSL_R_RECORD_LENGTH_MISMATCH)
            return conn_fail(c, "TLS handshake failed: the server does not speak TLS "
                                "(a plaintext Redis on a rediss:// URL?)");
        return conn_fail(c, "TLS handshake failed: %s", ssl_reason("protocol error"));
    }
    char why[DRAY__STRERROR_BYTES];
    if (e == SSL_ERROR_SYSCALL && saved)
        return conn_fail(c, "TLS handshake failed: %s", dray__strerror(saved, why, sizeof why));
    return conn_fail(c, "TLS handshake failed: the server closed the connection "
                        "(a plaintext Redis on a rediss:// URL?)");
}

/* Free c's SSL without close_notify (the link is being dropped). */
void
dray__tls_free(dray__conn *c)
{
    SSL_free(c->ssl); /* no close_notify: the link is being dropped anyway */
    c->ssl = NULL;
}

/* Put an I/O failure on the hiredis context, as hiredis itself would. */
static void
ctx_error(dray__conn *c, int type, const char *what, const char *detail)
{
    c->ctx->err = type;
    dray__err(c->ctx->errstr, sizeof c->ctx->errstr, 0, "%s%s", what, detail ? detail : "");
}

/* After SSL_read/SSL_write returned r <= 0: describe it on the context. */
static void
io_error(dray__conn *c, int r, int saved)
{
    int e = SSL_get_error(c->ssl, r);
    char why[DRAY__STRERROR_BYTES];
    if (e == SSL_ERROR_ZERO_RETURN)
        ctx_error(c, REDIS_ERR_EOF, "Server closed the connection", NULL);
    else if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        ctx_error(c, REDIS_ERR_IO, dray__strerror(EAGAIN, why, sizeof why), NULL);
    else if (e == SSL_ERROR_SSL)
        ctx_error(c, REDIS_ERR_IO, "TLS: ", ssl_reason("protocol error"));
    else if (saved)
        ctx_error(c, REDIS_ERR_IO, dray__strerror(saved, why, sizeof why), NULL);
    else
        ctx_error(c, REDIS_ERR_EOF, "Server closed the connection", NULL);
    ERR_clear_error();
}

/* redisBufferWrite over TLS: write what the output buffer holds; *done
 * once it is empty. REDIS_ERR with the cause on c->ctx. */
int
dray__tls_flush(dray__conn *c, int *done)
{
    redisContext *ctx = c->ctx;
    if (ctx->err)
        return REDIS_ERR;
    size_t len = sdslen(ctx->obuf);
    if (len > 0) {
        ERR_clear_error();
        errno = 0;
        int n = SSL_write(c->ssl, ctx->obuf, len > INT_MAX ? INT_MAX : (int)len);
        if (n <= 0) {
            io_error(c, n, errno);
            return REDIS_ERR;
        }
        if ((size_t)n == len)
            sdsclear(ctx->obuf);
        else
            sdsrange(ctx->obuf, n, -1);
    }
    if (done)
        *done = sdslen(ctx->obuf) == 0;
    return REDIS_OK;
}

/* Read what TLS has for us into the hiredis reader. */
static int
tls_fill(dray__conn *c)
{
    char buf[16 * 1024];
    ERR_clear_error();
    errno = 0;
    int n = SSL_read(c->ssl, buf, sizeof buf);
    if (n <= 0) {
        io_error(c, n, errno);
        return REDIS_ERR;
    }
    if (redisReaderFeed(c->ctx->reader, buf, (size_t)n) != REDIS_OK) {
        ctx_error(c, c->ctx->reader->err ? c->ctx->reader->err : REDIS_ERR_OOM,
                  c->ctx->reader->errstr, NULL);
        return REDIS_ERR;
    }
    return REDIS_OK;
}

/* The next parsed reply from the reader (NULL if incomplete);
 * REDIS_ERR with the protocol error on c->ctx. */
static int
reader_next(dray__conn *c, void **reply)
{
    if (redisReaderGetReply(c->ctx->reader, reply) == REDIS_OK)
        return REDIS_OK;
    ctx_error(c, c->ctx->reader->err, c->ctx->reader->errstr, NULL);
    return REDIS_ERR;
}

/* redisGetReply over TLS: flush, then read until one reply is whole. */
int
dray__tls_get_reply(dray__conn *c, void **reply)
{
    void *aux = NULL;
    *reply = NULL;
    if (c->ctx->err || reader_next(c, &aux) != REDIS_OK)
        return REDIS_ERR;
    if (!aux) {
        int done = 0;
        do {
            if (dray__tls_flush(c, &done) != REDIS_OK)
                return REDIS_ERR;
        } while (!done);
        do {
            if (tls_fill(c) != REDIS_OK || reader_next(c, &aux) != REDIS_OK)
                return REDIS_ERR;
        } while (!aux);
    }
    *reply = aux;
    return REDIS_OK;
}

/* True when the idle link holds no application bytes (TLS 1.3 tickets
 * are taken); false when it must be dropped. */
bool
dray__tls_idle_ok(dray__conn *c)
{
    if (SSL_pending(c->ssl) > 0)
        return false;
    char b;
    ssize_t n = recv(c->ctx->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return true;
    if (n <= 0)
        return false;
    /* Bytes wait on an idle link: TLS 1.3 session tickets, an alert, or a
     * reply out of step. Let OpenSSL take them without blocking: only
     * non-application records may be there. */
    struct timeval tv = {0, 1000};
    setsockopt(c->ctx->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ERR_clear_error();
    int r = SSL_peek(c->ssl, &b, 1);
    int e = r > 0 ? SSL_ERROR_NONE : SSL_get_error(c->ssl, r);
    ERR_clear_error();
    const dray__redis_cfg *cfg = c->cfg;
    int ms = cfg->command_timeout_ms + c->extra_timeout_ms;
    struct timeval back = {ms / 1000, (ms % 1000) * 1000};
    redisSetTimeout(c->ctx, back);
    if (r > 0 || e != SSL_ERROR_WANT_READ)
        return false;
    n = recv(c->ctx->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}
