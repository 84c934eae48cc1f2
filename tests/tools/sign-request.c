/* SPDX-License-Identifier: MIT */
/* Test tool: signs a request as a laptop would (crypto/request-sig.h), so
 * that integration tests can replay, tamper with and forge signed requests.
 *
 *   sign-request --new-key KEY            make a key; prints its id
 *   sign-request --public KEY             prints the base64url public key
 *   sign-request KEY METHOD PATH NONCE [BODY_FILE]
 *                                         prints the three header lines */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "basic/base64.h"
#include "basic/error.h"
#include "basic/fileio.h"
#include "basic/macro.h"
#include "crypto/request-sig.h"

static int die(int r, const char *what) {
        fprintf(stderr, "sign-request: %s: %s\n", what, err_message(r));
        return 1;
}

int main(int argc, char **argv) {
        _cleanup_(sign_key_freep) SignKey *k = NULL;
        uint8_t pub[SIGN_PUBLIC_SIZE];
        if (argc == 3 && !strcmp(argv[1], "--new-key")) {
                int r = sign_key_generate(&k);
                if (r >= 0)
                        r = sign_key_save(k, argv[2]);
                if (r < 0)
                        return die(r, argv[2]);
                char id[SIGN_KEY_ID_LEN + 1];
                sign_key_public(k, pub);
                sign_key_id(pub, id);
                printf("%s\n", id);
                return 0;
        }
        if (argc == 3 && !strcmp(argv[1], "--public")) {
                int r = sign_key_load(argv[2], &k);
                if (r < 0)
                        return die(r, argv[2]);
                char b64[BASE64URL_LEN(SIGN_PUBLIC_SIZE) + 1];
                sign_key_public(k, pub);
                base64url_encode(pub, sizeof pub, b64);
                printf("%s\n", b64);
                return 0;
        }
        if (argc != 5 && argc != 6) {
                fprintf(stderr, "usage: sign-request KEY METHOD PATH NONCE [BODY_FILE] | --new-key KEY | --public KEY\n");
                return 2;
        }
        int r = sign_key_load(argv[1], &k);
        if (r < 0)
                return die(r, argv[1]);
        _cleanup_free_ char *body = NULL;
        size_t len = 0;
        if (argc == 6 && (r = read_full_file(argv[5], 1 << 20, &body, &len)) < 0)
                return die(r, argv[5]);
        _cleanup_free_ char *headers = NULL;
        r = request_sig_headers(k, argv[2], argv[3], argv[4], body, len, &headers);
        if (r < 0)
                return die(r, "signing");
        printf("%s\n", headers);
        return 0;
}
