/* SPDX-License-Identifier: MIT */
#pragma once

/* etcd v3's JSON gateway, the bytes (pure: no I/O, fuzzed by
 * tests/fuzz/fuzz-etcd.c). The gateway speaks the gRPC messages as JSON:
 * keys and values in standard base64, 64-bit numbers as strings, fields with
 * their default value (0, false, empty) left out:
 *
 *   POST /v3/kv/range      {"key","range_end"}          -> {"header","kvs":[...],"count"}
 *   POST /v3/kv/put        {"key","value","lease"}      -> {"header"}
 *   POST /v3/kv/deleterange{"key"}                      -> {"header","deleted"}
 *   POST /v3/kv/txn        {"compare","success","failure"} -> {"header","succeeded","responses"}
 *   POST /v3/lease/grant   {"TTL"}                      -> {"header","ID","TTL"}
 *   POST /v3/lease/keepalive {"ID"}                     -> {"result":{"ID","TTL"}}  (TTL absent: expired)
 *   POST /v3/lease/revoke  {"ID"}                       -> {"header"}
 *   an error                                            -> {"error","code","message"}
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ETCD_KEY_MAX 512
#define ETCD_VALUE_MAX (64u * 1024)
#define ETCD_BODY_MAX (4u << 20) /* an answer we read at most */
#define ETCD_KVS_MAX 100000u

typedef struct EtcdKv {
        char *key;   /* NUL-terminated (keys with a NUL are refused) */
        char *value; /* NUL-terminated copy; value_len bytes */
        size_t value_len;
        int64_t create_revision, mod_revision, version, lease;
} EtcdKv;

typedef struct EtcdRange {
        EtcdKv *kvs;
        size_t n;
        int64_t revision; /* of the store when answered */
} EtcdRange;

void etcd_range_done(EtcdRange *r);

typedef enum EtcdCmpTarget {
        ETCD_CMP_VERSION, /* num: 0 = the key does not exist */
        ETCD_CMP_VALUE,   /* value */
        ETCD_CMP_LEASE,   /* num */
} EtcdCmpTarget;

typedef struct EtcdCmp {
        const char *key;
        EtcdCmpTarget target;
        const char *value; /* ETCD_CMP_VALUE */
        int64_t num;
} EtcdCmp; /* always EQUAL */

typedef enum EtcdOpKind {
        ETCD_OP_PUT,
        ETCD_OP_DELETE,
        ETCD_OP_RANGE, /* one key */
} EtcdOpKind;

typedef struct EtcdOp {
        EtcdOpKind kind;
        const char *key;
        const char *value; /* PUT: NUL-terminated */
        int64_t lease;     /* PUT: 0 = none */
} EtcdOp;

/* Standard base64 (with padding). Caller frees. */
char *etcd_b64_encode(const void *data, size_t len);
/* -EINVAL unless s is canonical base64; *ret NUL-terminated (caller frees). */
int etcd_b64_decode(const char *s, size_t max, char **ret, size_t *ret_len);

/* Request bodies. Caller frees *ret. -EINVAL for a key or value over the
 * bounds. prefix: the range is every key that starts with key. */
int etcd_body_range(const char *key, bool prefix, char **ret);
int etcd_body_put(const char *key, const char *value, int64_t lease, char **ret);
int etcd_body_delete(const char *key, char **ret);
int etcd_body_txn(const EtcdCmp *cmp, size_t ncmp, const EtcdOp *ok, size_t nok, const EtcdOp *fail, size_t nfail,
                  char **ret);
int etcd_body_lease(const char *field, int64_t v, char **ret); /* {"TTL":"v"} or {"ID":"v"} */

/* Answers. All refuse (-EBADMSG) what is not the expected shape, and every
 * count, length and number outside its bounds. An error answer is -EIO with
 * the gateway's message in err (err_set()). */
int etcd_parse_range(const char *body, size_t len, EtcdRange *ret);
/* ret_range (may be NULL): the first range response among the txn's, if any */
int etcd_parse_txn(const char *body, size_t len, bool *ret_succeeded, EtcdRange *ret_range);
/* grant and keepalive: ID and TTL (0: the lease is gone) */
int etcd_parse_lease(const char *body, size_t len, int64_t *ret_id, int64_t *ret_ttl);
/* any answer: its header's revision, or an error (-EIO) */
int etcd_parse_header(const char *body, size_t len, int64_t *ret_revision);
