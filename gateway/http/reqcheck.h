/*
 * reqcheck.h -- the request-line rules both codecs apply (HTTP/1.1 in
 * h1parse.c, HTTP/2 in h2.c), decided here once so that a request gets the
 * same answer whatever protocol carried it (issue 14: HTTP/1.1 answered 501
 * for `FOO` and `get` while HTTP/2 forwarded them, and an HTTP/2 :authority
 * with userinfo reached X-Forwarded-Host).
 *
 * Pure functions of their arguments: no allocation, any thread.
 */
#ifndef PT_GATEWAY_REQCHECK_H
#define PT_GATEWAY_REQCHECK_H

#include "portico/str.h"

/**
 * Checks a request method.
 *  - It must be a token (RFC 9110 §9.1, tchar); otherwise PT_ERR_INVALID (400).
 *  - It must be one Portico can carry on every codec and upstream: exactly
 *    the methods Debian's http-parser 2.9.4 knows (GET, HEAD, POST, PUT,
 *    DELETE, CONNECT, OPTIONS, TRACE, PATCH and the WebDAV/UPnP/misc ones of
 *    its HTTP_METHOD_MAP). Methods are case-sensitive (RFC 9110 §9.1), so
 *    `get` is not `GET`. Anything else is PT_ERR_NOT_IMPLEMENTED (501, RFC
 *    9110 §15.6.2 "method not recognised").
 * CONNECT passes here: whether plain CONNECT or RFC 8441 extended CONNECT
 * (:protocol) is served is the codec's decision, not the method table's.
 * Returns 0, or the PT_ERR_* with a static reason in *why.
 */
int pt_reqcheck_method(pt_str_t method, const char **why);

/**
 * Checks a request authority (HTTP/1.1 Host or absolute-form authority,
 * HTTP/2 :authority or host): `host [":" port]` where host is a bracketed
 * IPv6/IPvFuture literal of hex digits, ':' and '.', or a reg-name of ALPHA
 * DIGIT "-" "." "_" "~" (no percent-encoding, no sub-delims), and port is at
 * most 5 digits (possibly empty, RFC 3986 §3.2.3). A userinfo part
 * ("user@host") is refused with its own reason: RFC 9113 §8.3.1 forbids it
 * in :authority and RFC 9110 §4.2.4 deprecates it, and forwarded it would
 * end up in X-Forwarded-Host and the upstream's Host.
 * Returns 0, or PT_ERR_INVALID (400) with a static reason in *why.
 */
int pt_reqcheck_authority(pt_str_t authority, const char **why);

#endif /* PT_GATEWAY_REQCHECK_H */
