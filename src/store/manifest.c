/* SPDX-License-Identifier: MIT */
#include "manifest.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../basic/util.h"

int manifest_is_manifest(const void *data, size_t len) {
        return len >= 8 && memcmp(data, MANIFEST_MAGIC, 8) == 0;
}

static int json_depth_ok(json_t *j, int depth) {
        if (depth > 32)
                return 0;
        if (json_is_object(j)) {
                const char *k;
                json_t *v;
                json_object_foreach(j, k, v) if (!json_depth_ok(v, depth + 1)) return 0;
        } else if (json_is_array(j)) {
                size_t i;
                json_t *v;
                json_array_foreach(j, i, v) if (!json_depth_ok(v, depth + 1)) return 0;
        }
        return 1;
}

int manifest_parse(const void *data, size_t len, json_t **ret) {
        const uint8_t *b = data;
        if (len < 16 || !manifest_is_manifest(data, len))
                return -EBADMSG;
        if (get_le32(b + 8) != 1)
                return -EPROTONOSUPPORT;
        uint32_t n = get_le32(b + 12);
        if (n > MANIFEST_JSON_MAX || n != len - 16)
                return -EBADMSG;
        json_error_t e;
        json_t *j = json_loadb((const char *) b + 16, n, JSON_REJECT_DUPLICATES, &e);
        if (!j)
                return -EBADMSG;
        json_t *objs = json_object_get(j, "objects");
        if (!json_is_object(j) || !json_depth_ok(j, 0) || (objs && !json_is_object(objs)) ||
            (objs && json_object_size(objs) > MANIFEST_MAX_OBJECTS)) {
                json_decref(j);
                return -EBADMSG;
        }
        const char *k;
        json_t *v;
        json_object_foreach(objs, k, v) {
                RoamId id;
                if (!json_is_string(v) || id_from_hex(json_string_value(v), &id) < 0 || id_is_null(&id)) {
                        json_decref(j);
                        return -EBADMSG;
                }
        }
        *ret = j;
        return 0;
}

int manifest_serialize(json_t *j, void **ret, size_t *ret_len) {
        char *text = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
        if (!text)
                return -ENOMEM;
        size_t n = strlen(text);
        if (n > MANIFEST_JSON_MAX) {
                free(text);
                return -EFBIG;
        }
        uint8_t *b = malloc(16 + n);
        if (!b) {
                free(text);
                return -ENOMEM;
        }
        memcpy(b, MANIFEST_MAGIC, 8);
        put_le32(b + 8, 1);
        put_le32(b + 12, (uint32_t) n);
        memcpy(b + 16, text, n);
        free(text);
        *ret = b;
        *ret_len = 16 + n;
        return 0;
}

int manifest_foreach_object(json_t *j, int (*cb)(const char *, const RoamId *, void *), void *userdata) {
        json_t *objs = json_object_get(j, "objects");
        const char *k;
        json_t *v;
        json_object_foreach(objs, k, v) {
                RoamId id;
                if (id_from_hex(json_string_value(v), &id) < 0)
                        return -EBADMSG;
                int r = cb(k, &id, userdata);
                if (r < 0)
                        return r;
        }
        return 0;
}
