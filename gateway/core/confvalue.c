/*
 * confvalue.c -- checks of config values that more than one section uses
 * (confvalue.h): names of clusters and Redis targets, socket addresses.
 * Below config.c and upstream/redis_conf.c, which both call it.
 */
#include "core/confvalue.h"

#include <ctype.h>
#include <netdb.h>
#include <string.h>
#include <sys/socket.h>
#include "portico/status.h"
#include "portico/str.h"

static bool is_name_char(char c)
{
    return isalnum((unsigned char)c) || c == '_' || c == '-' || c == '.';
}

bool pt__config_valid_name(const char *s)
{
    if (s[0] == '\0' || strlen(s) > 128)
        return false;
    for (; *s != '\0'; s++)
        if (!is_name_char(*s))
            return false;
    return true;
}

/*
 * "IPv4:port" or "[IPv6]:port", numeric only: a config load never waits
 * for DNS. Port 1-65535.
 */
int pt__config_sockaddr(pt_conf_cx_t *cx, const pt_conf_node_t *n, pt_sockaddr_t *out)
{
    const char *text = NULL;
    if (pt_conf_get_str(cx, n, &text) != 0)
        return PT_ERR_INVALID;
    char host[64];
    const char *port;
    size_t hlen;
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (close == NULL || close[1] != ':')
            return pt_conf_error(cx, n, "bad address '%s': expected [IPv6]:PORT", text);
        hlen = (size_t)(close - text - 1);
        memcpy(host, text + 1, hlen < sizeof(host) ? hlen : 0);
        port = close + 2;
    } else {
        const char *colon = strrchr(text, ':');
        if (colon == NULL || colon == text)
            return pt_conf_error(cx, n, "bad address '%s': expected HOST:PORT", text);
        if (memchr(text, ':', (size_t)(colon - text)) != NULL)
            return pt_conf_error(cx, n, "bad address '%s': write IPv6 addresses as [ADDR]:PORT",
                                 text);
        hlen = (size_t)(colon - text);
        memcpy(host, text, hlen < sizeof(host) ? hlen : 0);
        port = colon + 1;
    }
    if (hlen == 0 || hlen >= sizeof(host))
        return pt_conf_error(cx, n, "bad address '%s': expected HOST:PORT", text);
    host[hlen] = '\0';
    unsigned long long pnum = 0;
    if (pt_str_to_u64(pt_str_c(port), 65535, &pnum) != 0 || pnum == 0)
        return pt_conf_error(cx, n, "bad address '%s': port must be a number in 1-65535", text);
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, port, &hints, &res) != 0 || res == NULL)
        return pt_conf_error(cx, n,
                             "bad address '%s': '%s' is not an IP address (names are not "
                             "resolved; use e.g. 127.0.0.1 or [::1])",
                             text, host);
    memset(out, 0, sizeof(*out));
    memcpy(&out->ss, res->ai_addr, res->ai_addrlen);
    out->len = res->ai_addrlen;
    out->text = text;
    freeaddrinfo(res);
    return 0;
}
