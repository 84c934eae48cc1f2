/* SPDX-License-Identifier: MIT */
/* The terms of a sync file (its bundle's envelope, daemon/sync-file.h): any
 * bytes parse or are refused; what parses formats and parses back the same. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/sync-file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char *text = malloc(size + 1);
        if (!text)
                return 0;
        memcpy(text, data, size);
        text[size] = 0;
        SyncTerms t, back;
        if (sync_terms_parse(text, &t) == 0) {
                char *again = sync_terms_format(&t);
                if (!again || sync_terms_parse(again, &back) != 0)
                        abort();
                char *third = sync_terms_format(&back);
                if (!third || strcmp(again, third))
                        abort();
                free(third);
                char *msg = NULL;
                size_t len;
                if (sync_terms_message(&t, &msg, &len) != 0 || strlen(msg) != len)
                        abort();
                free(msg);
                free(again);
        }
        free(text);
        return 0;
}
