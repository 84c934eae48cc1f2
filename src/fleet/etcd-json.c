/* SPDX-License-Identifier: MIT */
#include "etcd-json.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../basic/error.h"
#include "../basic/macro.h"

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *etcd_b64_encode(const void *data, size_t len) {
        const uint8_t *p = data;
        char *out = malloc((len + 2) / 3 * 4 + 1), *o = out;
        if (!out)
                return NULL;
        for (size_t i = 0; i < len; i += 3) {
                uint32_t v = (uint32_t) p[i] << 16;
                if (i + 1 < len)
                        v |= (uint32_t) p[i + 1] << 8;
                if (i + 2 < len)
                        v |= p[i + 2];
                *o++ = b64[v >> 18 & 63];
                *o++ = b64[v >> 12 & 63];
                *o++ = i + 1 < len ? b64[v >> 6 & 63] : '=';
                *o++ = i + 2 < len ? b64[v & 63] : '=';
        }
        *o = 0;
        return out;
}

static int b64_val(char c) {
        const char *p = c ? strchr(b64, c) : NULL;
        return p ? (int) (p - b64) : -1;
}

int etcd_b64_decode(const char *s, size_t max, char **ret, size_t *ret_len) {
        size_t n = strlen(s);
        if (n % 4)
                return -EINVAL;
        size_t pad = n >= 1 && s[n - 1] == '=' ? (n >= 2 && s[n - 2] == '=' ? 2 : 1) : 0;
        size_t len = n / 4 * 3 - pad;
        if (len > max)
                return -EFBIG;
        char *out = malloc(len + 1);
        if (!out)
                return -ENOMEM;
        size_t o = 0;
        for (size_t i = 0; i < n; i += 4) {
                int v[4];
                bool last = i + 4 == n;
                for (int k = 0; k < 4; k++) {
                        v[k] = (last && k >= 4 - (int) pad) ? 0 : b64_val(s[i + k]);
                        if (v[k] < 0) {
                                free(out);
                                return -EINVAL;
                        }
                }
                uint32_t x = (uint32_t) v[0] << 18 | (uint32_t) v[1] << 12 | (uint32_t) v[2] << 6 | (uint32_t) v[3];
                /* canonical: the bits padding drops must be zero */
                if (last && ((pad == 1 && (x & 0xff)) || (pad == 2 && (x & 0xffff)))) {
                        free(out);
                        return -EINVAL;
                }
                out[o++] = (char) (x >> 16);
                if (o < len)
                        out[o++] = (char) (x >> 8 & 0xff);
                if (o < len)
                        out[o++] = (char) (x & 0xff);
        }
        out[len] = 0;
        *ret = out;
        *ret_len = len;
        return 0;
}

/* ---- requests ---- */

static int key_ok(const char *key) {
        size_t n = key ? strlen(key) : 0;
        return n > 0 && n <= ETCD_KEY_MAX ? 0 : -EINVAL;
}

static json_t *b64_json(const char *s, size_t len) {
        _cleanup_free_ char *e = etcd_b64_encode(s, len);
        return e ? json_string(e) : NULL;
}

static json_t *int_json(int64_t v) {
        char buf[24];
        snprintf(buf, sizeof buf, "%" PRId64, v);
        return json_string(buf);
}

static int dump(json_t *j, char **ret) {
        if (!j)
                return -ENOMEM;
        char *s = json_dumps(j, JSON_COMPACT);
        json_decref(j);
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

/* the first key after every key that starts with prefix */
static char *prefix_end(const char *prefix) {
        size_t n = strlen(prefix);
        char *e = strdup(prefix);
        if (!e)
                return NULL;
        while (n > 0) {
                if ((unsigned char) e[n - 1] < 0xff) {
                        e[n - 1]++;
                        e[n] = 0;
                        return e;
                }
                n--;
        }
        free(e);
        return strdup("\\0"); /* not reached for our keys ("/roam/...") */
}

static json_t *range_json(const char *key, bool prefix) {
        json_t *j = json_object();
        if (!j || json_object_set_new(j, "key", b64_json(key, strlen(key))) < 0) {
                json_decref(j);
                return NULL;
        }
        if (prefix) {
                _cleanup_free_ char *end = prefix_end(key);
                if (!end || json_object_set_new(j, "range_end", b64_json(end, strlen(end))) < 0) {
                        json_decref(j);
                        return NULL;
                }
        }
        return j;
}

int etcd_body_range(const char *key, bool prefix, char **ret) {
        if (key_ok(key) < 0)
                return -EINVAL;
        return dump(range_json(key, prefix), ret);
}

static json_t *put_json(const char *key, const char *value, int64_t lease) {
        json_t *j = json_object();
        if (!j || json_object_set_new(j, "key", b64_json(key, strlen(key))) < 0 ||
            json_object_set_new(j, "value", b64_json(value, strlen(value))) < 0 ||
            (lease && json_object_set_new(j, "lease", int_json(lease)) < 0)) {
                json_decref(j);
                return NULL;
        }
        return j;
}

int etcd_body_put(const char *key, const char *value, int64_t lease, char **ret) {
        if (key_ok(key) < 0 || !value || strlen(value) > ETCD_VALUE_MAX)
                return -EINVAL;
        return dump(put_json(key, value, lease), ret);
}

int etcd_body_delete(const char *key, char **ret) {
        if (key_ok(key) < 0)
                return -EINVAL;
        return dump(range_json(key, false), ret);
}

static json_t *ops_json(const EtcdOp *ops, size_t n) {
        json_t *a = json_array();
        for (size_t i = 0; a && i < n; i++) {
                json_t *inner = NULL;
                const char *kind = NULL;
                if (key_ok(ops[i].key) < 0) {
                        json_decref(a);
                        return NULL;
                }
                switch (ops[i].kind) {
                case ETCD_OP_PUT:
                        if (!ops[i].value || strlen(ops[i].value) > ETCD_VALUE_MAX) {
                                json_decref(a);
                                return NULL;
                        }
                        inner = put_json(ops[i].key, ops[i].value, ops[i].lease);
                        kind = "requestPut";
                        break;
                case ETCD_OP_DELETE:
                        inner = range_json(ops[i].key, false);
                        kind = "requestDeleteRange";
                        break;
                case ETCD_OP_RANGE:
                        inner = range_json(ops[i].key, false);
                        kind = "requestRange";
                        break;
                }
                json_t *o = inner ? json_pack("{s:o}", kind, inner) : NULL;
                if (!o || json_array_append_new(a, o) < 0) {
                        json_decref(a);
                        return NULL;
                }
        }
        return a;
}

int etcd_body_txn(const EtcdCmp *cmp, size_t ncmp, const EtcdOp *ok, size_t nok, const EtcdOp *fail, size_t nfail,
                  char **ret) {
        json_t *c = json_array();
        for (size_t i = 0; c && i < ncmp; i++) {
                if (key_ok(cmp[i].key) < 0) {
                        json_decref(c);
                        return -EINVAL;
                }
                json_t *o = json_pack("{s:o, s:s}", "key", b64_json(cmp[i].key, strlen(cmp[i].key)), "result",
                                      "EQUAL");
                int r = -1;
                if (o)
                        switch (cmp[i].target) {
                        case ETCD_CMP_VERSION:
                                r = json_object_set_new(o, "target", json_string("VERSION")) |
                                    json_object_set_new(o, "version", int_json(cmp[i].num));
                                break;
                        case ETCD_CMP_LEASE:
                                r = json_object_set_new(o, "target", json_string("LEASE")) |
                                    json_object_set_new(o, "lease", int_json(cmp[i].num));
                                break;
                        case ETCD_CMP_VALUE:
                                if (!cmp[i].value || strlen(cmp[i].value) > ETCD_VALUE_MAX)
                                        break;
                                r = json_object_set_new(o, "target", json_string("VALUE")) |
                                    json_object_set_new(o, "value",
                                                        b64_json(cmp[i].value, strlen(cmp[i].value)));
                                break;
                        }
                if (r != 0 || json_array_append_new(c, o) < 0) {
                        if (r != 0)
                                json_decref(o);
                        json_decref(c);
                        return -EINVAL;
                }
        }
        json_t *s = ops_json(ok, nok), *f = ops_json(fail, nfail);
        if (!c || !s || !f) {
                json_decref(c);
                json_decref(s);
                json_decref(f);
                return -EINVAL;
        }
        return dump(json_pack("{s:o, s:o, s:o}", "compare", c, "success", s, "failure", f), ret);
}

int etcd_body_lease(const char *field, int64_t v, char **ret) {
        return dump(json_pack("{s:o}", field, int_json(v)), ret);
}

/* ---- answers ---- */

static int load(const char *body, size_t len, json_t **ret) {
        if (len > ETCD_BODY_MAX)
                return err_set(-EBADMSG, "etcd answered more than %u MiB", ETCD_BODY_MAX >> 20);
        json_error_t e;
        json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &e);
        if (!j || !json_is_object(j)) {
                json_decref(j);
                return err_set(-EBADMSG, "etcd answered something that is not a JSON object");
        }
        json_t *err = json_object_get(j, "error");
        if (err) {
                json_t *m = json_object_get(j, "message");
                const char *msg = json_is_string(m) ? json_string_value(m) : json_is_string(err) ? json_string_value(err) : "";
                err_set(-EIO, "etcd refused: %.200s", msg);
                json_decref(j);
                return -EIO;
        }
        *ret = j;
        return 0;
}

/* an int64 as the gateway writes it: a decimal string (absent: 0) */
static int get_i64(json_t *o, const char *k, int64_t *ret) {
        json_t *v = json_object_get(o, k);
        if (!v) {
                *ret = 0;
                return 0;
        }
        if (json_is_integer(v)) {
                *ret = json_integer_value(v);
                return 0;
        }
        if (!json_is_string(v))
                return -EBADMSG;
        const char *s = json_string_value(v);
        size_t n = json_string_length(v);
        if (n == 0 || n > 20)
                return -EBADMSG;
        char *end;
        errno = 0;
        long long x = strtoll(s, &end, 10);
        if (errno || *end || end != s + n)
                return -EBADMSG;
        *ret = x;
        return 0;
}

void etcd_range_done(EtcdRange *r) {
        for (size_t i = 0; i < r->n; i++) {
                free(r->kvs[i].key);
                free(r->kvs[i].value);
        }
        free(r->kvs);
        *r = (EtcdRange){ 0 };
}

static int header_revision(json_t *j, int64_t *ret) {
        json_t *h = json_object_get(j, "header");
        if (!h) {
                *ret = 0;
                return 0;
        }
        if (!json_is_object(h))
                return -EBADMSG;
        int r = get_i64(h, "revision", ret);
        return r < 0 || *ret < 0 ? -EBADMSG : 0;
}

static int range_from(json_t *j, EtcdRange *ret) {
        EtcdRange r = { 0 };
        if (header_revision(j, &r.revision) < 0)
                return -EBADMSG;
        json_t *kvs = json_object_get(j, "kvs");
        if (kvs && !json_is_array(kvs))
                return -EBADMSG;
        size_t n = kvs ? json_array_size(kvs) : 0;
        if (n > ETCD_KVS_MAX)
                return -EBADMSG;
        if (n && !(r.kvs = calloc(n, sizeof *r.kvs)))
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                json_t *kv = json_array_get(kvs, i);
                EtcdKv *k = &r.kvs[i];
                r.n = i + 1;
                json_t *key = json_object_get(kv, "key"), *val = json_object_get(kv, "value");
                size_t klen;
                if (!json_is_object(kv) || !json_is_string(key) || (val && !json_is_string(val)) ||
                    etcd_b64_decode(json_string_value(key), ETCD_KEY_MAX, &k->key, &klen) < 0 ||
                    strlen(k->key) != klen || klen == 0 ||
                    etcd_b64_decode(val ? json_string_value(val) : "", ETCD_VALUE_MAX, &k->value, &k->value_len) <
                            0 ||
                    get_i64(kv, "create_revision", &k->create_revision) < 0 ||
                    get_i64(kv, "mod_revision", &k->mod_revision) < 0 || get_i64(kv, "version", &k->version) < 0 ||
                    get_i64(kv, "lease", &k->lease) < 0 || k->create_revision < 0 || k->mod_revision < 0 ||
                    k->version < 0) {
                        etcd_range_done(&r);
                        return -EBADMSG;
                }
        }
        *ret = r;
        return 0;
}

int etcd_parse_range(const char *body, size_t len, EtcdRange *ret) {
        json_t *j;
        int r = load(body, len, &j);
        if (r < 0)
                return r;
        r = range_from(j, ret);
        json_decref(j);
        return r < 0 ? err_set_if_none(r, "etcd answered a range that is malformed") : 0;
}

int etcd_parse_txn(const char *body, size_t len, bool *ret_succeeded, EtcdRange *ret_range) {
        json_t *j;
        int r = load(body, len, &j);
        if (r < 0)
                return r;
        json_t *ok = json_object_get(j, "succeeded"), *resp = json_object_get(j, "responses");
        EtcdRange range = { 0 };
        int64_t rev;
        r = 0;
        if ((ok && !json_is_boolean(ok)) || (resp && !json_is_array(resp)) || header_revision(j, &rev) < 0)
                r = -EBADMSG;
        for (size_t i = 0; r >= 0 && resp && i < json_array_size(resp) && i < 1024; i++) {
                json_t *e = json_array_get(resp, i);
                if (!json_is_object(e)) {
                        r = -EBADMSG;
                        break;
                }
                json_t *rr = json_object_get(e, "response_range");
                if (!rr || range.kvs || range.revision)
                        continue;
                if (!json_is_object(rr) || range_from(rr, &range) < 0)
                        r = -EBADMSG;
                else if (!range.revision)
                        range.revision = rev ? rev : 1;
        }
        bool succeeded = ok && json_is_true(ok);
        json_decref(j);
        if (r < 0) {
                etcd_range_done(&range);
                return err_set(r, "etcd answered a transaction that is malformed");
        }
        if (ret_range)
                *ret_range = range;
        else
                etcd_range_done(&range);
        *ret_succeeded = succeeded;
        return 0;
}

int etcd_parse_lease(const char *body, size_t len, int64_t *ret_id, int64_t *ret_ttl) {
        json_t *j;
        int r = load(body, len, &j);
        if (r < 0)
                return r;
        json_t *o = json_object_get(j, "result");
        if (!o)
                o = j; /* grant: no wrapper */
        int64_t id, ttl;
        if (!json_is_object(o) || get_i64(o, "ID", &id) < 0 || get_i64(o, "TTL", &ttl) < 0 || ttl < 0 ||
            ttl > 1000000) {
                json_decref(j);
                return err_set(-EBADMSG, "etcd answered a lease that is malformed");
        }
        json_decref(j);
        *ret_id = id;
        *ret_ttl = ttl;
        return 0;
}

int etcd_parse_header(const char *body, size_t len, int64_t *ret_revision) {
        json_t *j;
        int r = load(body, len, &j);
        if (r < 0)
                return r;
        r = header_revision(j, ret_revision);
        json_decref(j);
        return r < 0 ? err_set(r, "etcd answered a header that is malformed") : 0;
}
