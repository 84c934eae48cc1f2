/* SPDX-License-Identifier: MIT */
#include "image.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../basic/error.h"
#include "../basic/macro.h"
#include "../basic/util.h"
#include "../store/index.h"
#include "../store/manifest.h"

void image_info_done(ImageInfo *i) {
        if (!i)
                return;
        free(i->append);
        *i = (ImageInfo) {};
}

int image_manifest_build(const ImageInfo *i, json_t **ret) {
        if (!i->boot && !i->layer)
                return -EINVAL;
        char d[ID_HEX_SIZE], k[ID_HEX_SIZE], n[ID_HEX_SIZE], b[ID_HEX_SIZE];
        json_t *objects = json_pack("{s:s}", "disk", id_to_hex(&i->disk, d));
        if (objects && i->boot && json_object_set_new(objects, "kernel", json_string(id_to_hex(&i->kernel, k))) < 0)
                goto oom;
        if (objects && i->boot && i->has_initrd &&
            json_object_set_new(objects, "initrd", json_string(id_to_hex(&i->initrd, n))) < 0)
                goto oom;
        if (objects && i->layer && json_object_set_new(objects, "base", json_string(id_to_hex(&i->base, b))) < 0)
                goto oom;
        json_t *j = objects ? json_pack("{s:s, s:o, s:s?, s:b, s:b, s:I}", "kind", "image", "objects", objects,
                                        "append", i->append, "agent", i->agent, "profile", i->profile, "created",
                                        (json_int_t) time(NULL))
                            : NULL;
        if (!j)
                return -ENOMEM;
        *ret = j;
        return 0;
oom:
        json_decref(objects);
        return -ENOMEM;
}

static int object_id(json_t *objects, const char *role, bool required, RoamId *ret, bool *ret_has) {
        json_t *v = json_object_get(objects, role);
        if (!v) {
                if (required)
                        return err_set(-EBADMSG, "image manifest lacks its %s", role);
                *ret_has = false;
                return 0;
        }
        if (!json_is_string(v) || id_from_hex(json_string_value(v), ret) < 0)
                return err_set(-EBADMSG, "image manifest has a malformed %s id", role);
        if (ret_has)
                *ret_has = true;
        return 0;
}

static int optional_bool(json_t *j, const char *key, bool *ret) {
        json_t *v = json_object_get(j, key);
        if (!v || json_is_null(v)) {
                *ret = false;
                return 0;
        }
        if (!json_is_boolean(v))
                return err_set(-EBADMSG, "image manifest member '%s' is not a boolean", key);
        *ret = json_is_true(v);
        return 0;
}

static int parse_json(json_t *j, ImageInfo *ret) {
        const char *kind = json_string_value(json_object_get(j, "kind"));
        if (!kind || strcmp(kind, "image"))
                return err_set(-EBADMSG, "object is not an image manifest (kind '%s')", kind ? kind : "?");
        ImageInfo i = {};
        json_t *objects = json_object_get(j, "objects");
        if (!json_is_object(objects))
                return err_set(-EBADMSG, "image manifest has no objects");
        int r = object_id(objects, "disk", true, &i.disk, NULL);
        if (r >= 0)
                r = object_id(objects, "base", false, &i.base, &i.layer);
        if (r >= 0) /* a layer over a bare disk has no kernel */
                r = object_id(objects, "kernel", !i.layer, &i.kernel, &i.boot);
        if (r >= 0 && i.boot)
                r = object_id(objects, "initrd", false, &i.initrd, &i.has_initrd);
        else if (r >= 0 && json_object_get(objects, "initrd"))
                r = err_set(-EBADMSG, "image manifest has an initrd but no kernel");
        if (r >= 0)
                r = optional_bool(j, "agent", &i.agent);
        if (r >= 0)
                r = optional_bool(j, "profile", &i.profile);
        if (r < 0)
                return r;
        json_t *a = json_object_get(j, "append");
        if (a && !json_is_null(a)) {
                const char *s = json_string_value(a);
                if (!s)
                        return err_set(-EBADMSG, "image manifest member 'append' is not a string");
                size_t n = strlen(s);
                if (n > IMAGE_APPEND_MAX)
                        return err_set(-EBADMSG, "image manifest's kernel command line is longer than %d bytes",
                                       IMAGE_APPEND_MAX);
                for (size_t k = 0; k < n; k++)
                        if ((unsigned char) s[k] < 0x20 || s[k] == 0x7f)
                                return err_set(-EBADMSG, "image manifest's kernel command line has a control "
                                                         "character");
                i.append = strdup(s);
                if (!i.append)
                        return -ENOMEM;
        }
        *ret = i;
        return 0;
}

int image_manifest_parse(const void *data, size_t len, ImageInfo *ret) {
        _cleanup_(json_decrefp) json_t *j = NULL;
        int r = manifest_parse(data, len, &j);
        if (r < 0)
                return err_set_if_none(r, "image manifest is malformed");
        return parse_json(j, ret);
}

int image_resolve(Store *s, const RoamId *id, ImageInfo *ret) {
        _cleanup_free_ void *data = NULL;
        size_t len;
        char hex[ID_HEX_SIZE];
        int r = store_object_get(s, id, MANIFEST_JSON_MAX + 64, &data, &len);
        if (r < 0)
                return err_set_if_none(r, "cannot read image object %.12s: %s", id_to_hex(id, hex), strerror(-r));
        ImageInfo i = {};
        if (index_is_index(data, len)) {
                i.id = *id;
                i.disk = *id;
        } else if (manifest_is_manifest(data, len)) {
                r = image_manifest_parse(data, len, &i);
                if (r < 0)
                        return r;
                i.id = *id;
        } else
                return err_set(-EBADMSG, "object %.12s is neither a disk index nor an image manifest",
                               id_to_hex(id, hex));
        *ret = i;
        return 0;
}

int image_lookup(Store *s, const char *name, ImageInfo *ret) {
        if (!name_is_valid(name))
                return err_set(-EINVAL, "image name '%s' is invalid (use " NAME_RULE ")", name ? name : "");
        char ref[REF_NAME_MAX_LEN + 1];
        snprintf(ref, sizeof ref, "images/%s", name);
        RoamId id;
        int r = store_ref_get(s, ref, &id);
        if (r == -ENOENT)
                return err_set(-ENOENT, "image '%s' not found (try 'roam image list')", name);
        if (r < 0)
                return r;
        r = image_resolve(s, &id, ret);
        if (r < 0)
                return err_set_if_none(r, "image '%s' is damaged (run 'roam store fsck')", name);
        return 0;
}

/* ---- checks ---- */

static uint32_t le32(const uint8_t *p) {
        return (uint32_t) p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16 | (uint32_t) p[3] << 24;
}

static uint16_t le16(const uint8_t *p) {
        return (uint16_t) (p[0] | p[1] << 8);
}

/* CRC-32C (Castagnoli), reflected, no final inversion: what ext4 stores. */
static uint32_t crc32c_raw(uint32_t crc, const uint8_t *p, size_t n) {
        while (n--) {
                crc ^= *p++;
                for (int k = 0; k < 8; k++)
                        crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1)));
        }
        return crc;
}

#define EXT4_MAGIC 0xEF53
#define EXT4_OFF_BLOCKS_LO 0x04
#define EXT4_OFF_LOG_BLOCK 0x18
#define EXT4_OFF_MAGIC 0x38
#define EXT4_OFF_STATE 0x3A
#define EXT4_OFF_INCOMPAT 0x60
#define EXT4_OFF_RO_COMPAT 0x64
#define EXT4_OFF_BLOCKS_HI 0x150
#define EXT4_OFF_CHECKSUM 0x3FC
#define EXT4_INCOMPAT_64BIT 0x80
#define EXT4_RO_COMPAT_METADATA_CSUM 0x400
#define EXT4_STATE_ERRORS 0x2

int image_check_ext4(const uint8_t *sb, size_t sb_len, uint64_t file_size, char *why, size_t why_size) {
        if (why_size)
                why[0] = 0;
        if (sb_len < IMAGE_EXT4_SB_SIZE || le16(sb + EXT4_OFF_MAGIC) != EXT4_MAGIC)
                return 0;
        uint32_t log = le32(sb + EXT4_OFF_LOG_BLOCK);
        if (log > 6) {
                snprintf(why, why_size, "its ext4 superblock is damaged (block size 2^%u KiB)", log);
                return -EBADMSG;
        }
        if (le32(sb + EXT4_OFF_RO_COMPAT) & EXT4_RO_COMPAT_METADATA_CSUM) {
                uint32_t want = le32(sb + EXT4_OFF_CHECKSUM),
                         got = crc32c_raw(0xFFFFFFFFu, sb, EXT4_OFF_CHECKSUM);
                if (want != got) {
                        snprintf(why, why_size, "its ext4 superblock is damaged (checksum %08x, expected %08x)", got,
                                 want);
                        return -EBADMSG;
                }
        }
        uint64_t blocks = le32(sb + EXT4_OFF_BLOCKS_LO);
        if (le32(sb + EXT4_OFF_INCOMPAT) & EXT4_INCOMPAT_64BIT)
                blocks |= (uint64_t) le32(sb + EXT4_OFF_BLOCKS_HI) << 32;
        uint64_t bs = 1024ull << log;
        if (blocks == 0 || blocks > UINT64_MAX / bs) {
                snprintf(why, why_size, "its ext4 superblock is damaged (%llu blocks)", (unsigned long long) blocks);
                return -EBADMSG;
        }
        if (blocks * bs > file_size) {
                snprintf(why, why_size, "it is truncated: its ext4 file system is %llu bytes, the file %llu",
                         (unsigned long long) (blocks * bs), (unsigned long long) file_size);
                return -EBADMSG;
        }
        if (le16(sb + EXT4_OFF_STATE) & EXT4_STATE_ERRORS) {
                snprintf(why, why_size, "its ext4 file system is marked as having errors");
                return -EBADMSG;
        }
        return 1;
}

int image_check_kernel(const uint8_t *head, size_t n, uint64_t file_size, char *why, size_t why_size) {
        if (why_size)
                why[0] = 0;
        if (n >= 4 && !memcmp(head, "\x7f" "ELF", 4))
                return 0;
        /* a bzImage: the boot sector's 0xAA55, then the setup header "HdrS" at 0x202 */
        if (n >= 0x210 && le16(head + 0x1FE) == 0xAA55 && !memcmp(head + 0x202, "HdrS", 4)) {
                uint32_t setup_sects = head[0x1F1] ? head[0x1F1] : 4;
                uint32_t syssize = le32(head + 0x1F4); /* in 16-byte units */
                uint64_t need = (uint64_t) (setup_sects + 1) * 512 + (uint64_t) syssize * 16;
                if (need > file_size) {
                        snprintf(why, why_size, "it is truncated: its header says %llu bytes, the file has %llu",
                                 (unsigned long long) need, (unsigned long long) file_size);
                        return -EBADMSG;
                }
                return 0;
        }
        snprintf(why, why_size, "it is neither a bzImage nor an ELF kernel");
        return -EBADMSG;
}

/* ---- layers ---- */

static uint64_t be64(const uint8_t *p) {
        uint64_t v = 0;
        for (int k = 0; k < 8; k++)
                v = v << 8 | p[k];
        return v;
}

static uint32_t be32(const uint8_t *p) {
        return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 | p[3];
}

int image_qcow2_backing(const uint8_t *head, size_t n, char *ret, size_t size, char *why, size_t why_size) {
        if (why_size)
                why[0] = 0;
        if (size)
                ret[0] = 0;
        if (n < 4 || memcmp(head, "QFI\xfb", 4))
                return 0;
        if (n < 72) {
                snprintf(why, why_size, "its qcow2 header is cut short (%zu bytes)", n);
                return -EBADMSG;
        }
        uint32_t version = be32(head + 4);
        if (version != 2 && version != 3) {
                snprintf(why, why_size, "it is qcow2 version %u (2 or 3 expected)", version);
                return -EBADMSG;
        }
        uint64_t off = be64(head + 8);
        uint32_t len = be32(head + 16);
        if (off == 0 || len == 0)
                return 1; /* no backing file */
        if (len > IMAGE_BACKING_MAX || len >= size) {
                snprintf(why, why_size, "its backing file name is %u bytes long", len);
                return -EBADMSG;
        }
        if (off < 72 || off > n || len > n - off) {
                snprintf(why, why_size, "its backing file name lies outside the header (offset %llu)",
                         (unsigned long long) off);
                return -EBADMSG;
        }
        for (uint32_t k = 0; k < len; k++)
                if (head[off + k] < 0x20 || head[off + k] == 0x7f) {
                        snprintf(why, why_size, "its backing file name has a control character");
                        return -EBADMSG;
                }
        memcpy(ret, head + off, len);
        ret[len] = 0;
        return 1;
}

int image_layer_backing_id(const char *name, RoamId *ret) {
        char hex[ID_HEX_SIZE];
        if (strlen(name) != ID_HEX_SIZE - 1 + 4 || strcmp(name + ID_HEX_SIZE - 1, ".raw"))
                return -EBADMSG;
        memcpy(hex, name, ID_HEX_SIZE - 1);
        hex[ID_HEX_SIZE - 1] = 0;
        return id_from_hex(hex, ret) < 0 ? -EBADMSG : 0;
}
