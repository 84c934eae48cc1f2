/* SPDX-License-Identifier: MIT */
#pragma once

/* A small etcd v3 client over its JSON gateway (etcd-json.h) with libcurl.
 *
 * Endpoints: the members' client URLs. A call goes to the member that
 * answered last; a member that cannot be reached, times out or answers 5xx
 * is skipped for the next one, so the client goes on while a majority of
 * the cluster does. Each attempt is bounded (ETCD_CONNECT_MS to connect,
 * ETCD_REQUEST_MS in all). One client is used by one thread at a time
 * (internal mutex); a thread that must not wait behind others (the lease
 * keeper) has a client of its own. */

#include <stdbool.h>
#include <stdint.h>

#include "etcd-json.h"

#define ETCD_ENDPOINTS_MAX 8
#define ETCD_URL_MAX 256
#define ETCD_CONNECT_MS 1000
#define ETCD_REQUEST_MS 3000

typedef struct EtcdClient EtcdClient;

/* urls: "http://HOST:PORT[,http://HOST:PORT...]". -EINVAL with detail.
 * Caller frees with etcd_client_free(). Nothing is contacted yet. */
int etcd_client_new(const char *urls, EtcdClient **ret);
void etcd_client_free(EtcdClient *c);
static inline void etcd_client_freep(EtcdClient **c) {
        if (*c)
                etcd_client_free(*c);
}
/* Per-attempt bounds instead of ETCD_CONNECT_MS and ETCD_REQUEST_MS. */
void etcd_client_set_timeouts(EtcdClient *c, unsigned connect_ms, unsigned request_ms);
/* The endpoints as given. */
const char *etcd_client_urls(const EtcdClient *c);

/* Errors: -EHOSTUNREACH (with detail) when no member answered; -EIO when
 * etcd refused the request; -EBADMSG for a malformed answer. */
int etcd_get(EtcdClient *c, const char *key, EtcdRange *ret);         /* ret->n: 0 or 1 */
int etcd_get_prefix(EtcdClient *c, const char *prefix, EtcdRange *ret);
int etcd_put(EtcdClient *c, const char *key, const char *value, int64_t lease);
int etcd_delete(EtcdClient *c, const char *key);
/* ret_range (may be NULL): the first range op's answer */
int etcd_txn(EtcdClient *c, const EtcdCmp *cmp, size_t ncmp, const EtcdOp *ok, size_t nok, const EtcdOp *fail,
             size_t nfail, bool *ret_succeeded, EtcdRange *ret_range);
int etcd_lease_grant(EtcdClient *c, int64_t ttl_s, int64_t *ret_id);
/* *ret_ttl: what is left of it; 0 when the lease is gone (expired, revoked) */
int etcd_lease_keepalive(EtcdClient *c, int64_t id, int64_t *ret_ttl);
int etcd_lease_revoke(EtcdClient *c, int64_t id);
