/* SPDX-License-Identifier: MIT */
/* What etcd's JSON gateway answers (src/fleet/etcd-json.h): every parser
 * either refuses or hands out bounded, NUL-terminated keys and values whose
 * lengths are what it says, and base64 decodes back to what encodes. The
 * values roam keeps there too: an offline grant (fleet.h) and a laptop's
 * record (laptop-fleet.h) parse to bounded fields, and a record written back
 * parses to the same. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "basic/error.h"
#include "daemon/laptop-fleet.h"
#include "fleet/etcd-json.h"
#include "fleet/fleet.h"

static void check_range(const EtcdRange *r) {
        if (r->n > ETCD_KVS_MAX)
                abort();
        for (size_t i = 0; i < r->n; i++) {
                const EtcdKv *k = &r->kvs[i];
                size_t kl = strlen(k->key);
                if (kl == 0 || kl > ETCD_KEY_MAX || k->value_len > ETCD_VALUE_MAX || k->value[k->value_len] != 0)
                        abort();
                if (k->version < 0 || k->mod_revision < 0 || k->create_revision < 0)
                        abort();
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const char *body = (const char *) data;
        err_clear();
        EtcdRange r = { 0 };
        if (etcd_parse_range(body, size, &r) >= 0)
                check_range(&r);
        etcd_range_done(&r);
        bool ok;
        if (etcd_parse_txn(body, size, &ok, &r) >= 0)
                check_range(&r);
        etcd_range_done(&r);
        int64_t id, ttl, rev;
        if (etcd_parse_lease(body, size, &id, &ttl) >= 0 && ttl < 0)
                abort();
        (void) etcd_parse_header(body, size, &rev);
        FleetGrant g;
        if (fleet_grant_parse(body, size, &g) >= 0 &&
            (strlen(g.laptop) != FLEET_LAPTOP_ID_LEN || !fleet_name_is_valid(g.from) || g.epoch < 1))
                abort();
        LaptopRecord l;
        if (laptop_fleet_record_parse(body, size, &l) >= 0) {
                char *v = laptop_fleet_record_format(&l);
                LaptopRecord back;
                if (!v || laptop_fleet_record_parse(v, strlen(v), &back) < 0 || strcmp(back.id, l.id) ||
                    strcmp(back.name, l.name) || strcmp(back.user, l.user) || back.revoked != l.revoked)
                        abort();
                free(v);
        }
        err_clear();
        /* base64: decode what the input says, and round-trip it */
        char *s = malloc(size + 1);
        if (!s)
                return 0;
        memcpy(s, data, size);
        s[size] = 0;
        char *dec = NULL;
        size_t len;
        if (etcd_b64_decode(s, ETCD_VALUE_MAX, &dec, &len) >= 0) {
                char *enc = etcd_b64_encode(dec, len);
                if (!enc || strcmp(enc, s))
                        abort(); /* canonical: what decodes encodes back the same */
                free(enc);
                free(dec);
        }
        free(s);
        return 0;
}
