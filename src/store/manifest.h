/* SPDX-License-Identifier: MIT */
#pragma once

/* Manifest: a metadata object that names other objects (a session
 * checkpoint: overlay index, RAM index, device state, config). Format:
 *
 *   0  8  magic "ROAMMAN\0"
 *   8  4  version (1)
 *  12  4  JSON length n (<= MANIFEST_JSON_MAX)
 *  16  n  JSON object; its member "objects" maps role names to 64-hex object
 *         ids, which reachability (fsck, gc, sync, bundles) follows.
 *
 * Everything else in the JSON is free-form metadata for its kind. */

#include <jansson.h>
#include <stddef.h>

#include "../basic/hash.h"

#define MANIFEST_MAGIC "ROAMMAN"
#define MANIFEST_JSON_MAX (1u << 20)
#define MANIFEST_MAX_OBJECTS 1024

int manifest_is_manifest(const void *data, size_t len);
/* Parses; -EBADMSG on violations (bad magic, length, JSON, ids). Caller
 * owns *ret (json_decref). */
int manifest_parse(const void *data, size_t len, json_t **ret);
/* Serializes a JSON object (compact, sorted keys). Caller frees *ret. */
int manifest_serialize(json_t *j, void **ret, size_t *ret_len);
/* Calls cb for each id under "objects"; the JSON must come from manifest_parse(). */
int manifest_foreach_object(json_t *j, int (*cb)(const char *role, const RoamId *id, void *userdata),
                            void *userdata);
