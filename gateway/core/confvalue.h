/*
 * confvalue.h -- checks of config values shared by sections (confvalue.c).
 */
#ifndef PT_GATEWAY_CONFVALUE_H
#define PT_GATEWAY_CONFVALUE_H

#include <stdbool.h>
#include "core/listener_conf.h"
#include "portico/conf.h"

/**
 * Parses an `IPv4:PORT` / `[IPv6]:PORT` scalar (numeric only: no DNS at load
 * time) into `out`, reporting problems at `n`. 0 or PT_ERR_INVALID.
 */
int pt__config_sockaddr(pt_conf_cx_t *cx, const pt_conf_node_t *n, pt_sockaddr_t *out);

/** True for a name of a cluster or Redis target: 1-128 of letters, digits, '_', '-', '.'. */
bool pt__config_valid_name(const char *s);

#endif /* PT_GATEWAY_CONFVALUE_H */
