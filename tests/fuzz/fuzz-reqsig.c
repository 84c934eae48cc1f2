/* SPDX-License-Identifier: MIT */
/* The bytes a laptop's signed request brings: its three signature headers
 * (request_sig_parse(); the input split at newlines, as header values
 * would be) and its pairing body (api_laptop_parse_pairing()). */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/request-sig.h"
#include "daemon/api-laptop.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char *text = malloc(size + 1);
        if (!text)
                return 0;
        memcpy(text, data, size);
        text[size] = 0;
        char *parts[3] = { NULL, NULL, NULL }, *p = text;
        for (int i = 0; i < 3 && p; i++) {
                parts[i] = p;
                p = strchr(p, '\n');
                if (p)
                        *p++ = 0;
        }
        RequestSig s;
        if (request_sig_parse(parts[0], parts[1], parts[2], &s) == 0) {
                if (strlen(s.laptop) != SIGN_KEY_ID_LEN || !hex_is_exact(s.nonce, REQSIG_NONCE_HEX_LEN))
                        abort();
                uint8_t pub[SIGN_PUBLIC_SIZE] = { 0 };
                (void) request_sig_verify(pub, &s, "POST", "/v1/sessions/s1/offline", data, size);
        }
        free(text);
        json_t *j = json_loadb((const char *) data, size, JSON_REJECT_DUPLICATES, NULL);
        uint8_t pub[SIGN_PUBLIC_SIZE];
        const char *name, *user;
        if (api_laptop_parse_pairing(j, pub, &name, &user) == 0 && (!name || !*name))
                abort();
        json_decref(j);
        return 0;
}
