/* SPDX-License-Identifier: MIT */
/* The store's own small files as they are read from disk: DIR/config
 * (store_open()) and a ref file (store_ref_get()). The first byte picks which;
 * the rest is the file. Works in a temp directory (TMPDIR, else /tmp). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "basic/error.h"
#include "basic/fileio.h"
#include "basic/hash.h"
#include "store/store.h"

static char dir[256], cfg_dir[300];

static void cleanup(void) {
        (void) rm_rf(dir);
}

static void setup(void) {
        if (dir[0])
                return;
        const char *t = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/roam-fuzz-store.XXXXXX", t && *t ? t : "/tmp");
        if (!mkdtemp(dir))
                abort();
        atexit(cleanup);
        Store *s = NULL;
        StoreOptions o = { .create = true };
        if (store_open(dir, &o, &s) < 0)
                abort();
        store_free(s);
        snprintf(cfg_dir, sizeof cfg_dir, "%s/cfg", dir);
        if (mkdir_p(cfg_dir, 0755) < 0)
                abort();
}

static void put(const char *path, const uint8_t *data, size_t size) {
        FILE *f = fopen(path, "wb");
        if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0)
                abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        setup();
        if (size < 1)
                return 0;
        char path[512];
        if (data[0] & 1) {
                snprintf(path, sizeof path, "%s/refs/fuzz", dir);
                put(path, data + 1, size - 1);
                Store *s = NULL;
                if (store_open(dir, NULL, &s) < 0)
                        abort();
                RoamId id;
                int r = store_ref_get(s, "fuzz", &id);
                if (r >= 0) {
                        /* a ref that parses is exactly "roam-ref 1 <64 hex>\n" */
                        char hex[ID_HEX_SIZE], want[128];
                        snprintf(want, sizeof want, "roam-ref 1 %s\n", id_to_hex(&id, hex));
                        if (size - 1 != strlen(want) || strncasecmp((const char *) data + 1, want, size - 1))
                                abort();
                } else if (r != -EBADMSG)
                        abort();
                store_free(s);
        } else {
                snprintf(path, sizeof path, "%s/config", cfg_dir);
                put(path, data + 1, size - 1);
                Store *s = NULL;
                int r = store_open(cfg_dir, NULL, &s);
                if (r >= 0) {
                        uint32_t cs = store_chunk_size(s);
                        if (cs < STORE_CHUNK_SIZE_MIN || cs > STORE_CHUNK_SIZE_MAX || (cs & (cs - 1)))
                                abort();
                        store_free(s);
                } else if (s)
                        abort();
        }
        err_clear();
        return 0;
}
