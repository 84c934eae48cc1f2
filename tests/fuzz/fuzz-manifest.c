/* SPDX-License-Identifier: MIT */
#include <stdint.h>
#include <stdlib.h>

#include "store/manifest.h"

static int count(const char *role, const RoamId *id, void *userdata) {
        (*(int *) userdata)++;
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        json_t *j = NULL;
        if (manifest_parse(data, size, &j) < 0)
                return 0;
        int n = 0;
        if (manifest_foreach_object(j, count, &n) < 0 || n > MANIFEST_MAX_OBJECTS)
                abort();
        json_decref(j);
        return 0;
}
