/* SPDX-License-Identifier: MIT */
/* What a user types or pastes as a certificate fingerprint (--fingerprint,
 * serve.json, server-pin.json) and as a pairing token (TOKEN@sha256:HEX):
 * fingerprint_parse() and pairing_token_split() (crypto/fingerprint.h).
 * What parses formats back to a text that parses to the same bytes; a split
 * token joins back to its canonical form. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "basic/error.h"
#include "crypto/fingerprint.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char *text = malloc(size + 1);
        if (!text)
                return 0;
        memcpy(text, data, size);
        text[size] = 0;
        Fingerprint fp, again;
        char buf[FINGERPRINT_TEXT_SIZE];
        if (fingerprint_parse(text, &fp) == 0) {
                if (fingerprint_parse(fingerprint_format(&fp, buf), &again) != 0 || !fingerprint_equal(&fp, &again))
                        abort();
                if (strlen(buf) != FINGERPRINT_TEXT_SIZE - 1)
                        abort();
        }
        char *token = NULL;
        bool has = false;
        if (pairing_token_split(text, &token, &fp, &has) == 0) {
                if (!*token || strchr(token, '@') || strlen(token) > strlen(text))
                        abort();
                if (has) {
                        char *joined = NULL;
                        if (pairing_token_join(token, &fp, &joined) != 0)
                                abort();
                        char *t2 = NULL;
                        bool has2 = false;
                        if (pairing_token_split(joined, &t2, &again, &has2) != 0 || !has2 || strcmp(t2, token) ||
                            !fingerprint_equal(&fp, &again))
                                abort();
                        free(t2);
                        free(joined);
                }
                free(token);
        }
        err_clear();
        free(text);
        return 0;
}
