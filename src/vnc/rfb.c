/* SPDX-License-Identifier: MIT */
/* OpenSSL 3 keeps single DES only behind the legacy provider for EVP; the
 * low-level DES_* calls work without it and are what VNC Authentication
 * needs (it is DES by definition, not by our choice). */
#define OPENSSL_SUPPRESS_DEPRECATED 1
#include "rfb.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/des.h>
#include <stdio.h>
#include <string.h>

#include "../basic/base64.h"
#include "../basic/error.h"
#include "../basic/macro.h"

#define SEC_NONE 1
#define SEC_VNC_AUTH 2

static const char version_38[12] = "RFB 003.008\n";

static int io_read(const RfbIo *io, void *buf, size_t n) {
        return io->read(io->userdata, buf, n);
}
static int io_write(const RfbIo *io, const void *buf, size_t n) {
        return io->write(io->userdata, buf, n);
}
static int write_u8(const RfbIo *io, uint8_t v) {
        return io_write(io, &v, 1);
}
static int write_u32(const RfbIo *io, uint32_t v) {
        uint8_t b[4] = { (uint8_t) (v >> 24), (uint8_t) (v >> 16), (uint8_t) (v >> 8), (uint8_t) v };
        return io_write(io, b, 4);
}
static int read_u32(const RfbIo *io, uint32_t *ret) {
        uint8_t b[4];
        int r = io_read(io, b, 4);
        if (r < 0)
                return r;
        *ret = (uint32_t) b[0] << 24 | (uint32_t) b[1] << 16 | (uint32_t) b[2] << 8 | b[3];
        return 0;
}

int rfb_version_parse(const uint8_t buf[12], int *ret_minor) {
        if (memcmp(buf, "RFB 003.", 8) || buf[11] != '\n')
                return -EPROTO;
        int minor = 0;
        for (int i = 8; i < 11; i++) {
                if (buf[i] < '0' || buf[i] > '9')
                        return -EPROTO;
                minor = minor * 10 + (buf[i] - '0');
        }
        *ret_minor = minor >= 8 ? 8 : minor == 7 ? 7 : 3;
        return 0;
}

/* ---- DES as VNC uses it ---- */

static uint8_t reverse_bits(uint8_t b) {
        b = (uint8_t) ((b & 0xf0) >> 4 | (b & 0x0f) << 4);
        b = (uint8_t) ((b & 0xcc) >> 2 | (b & 0x33) << 2);
        return (uint8_t) ((b & 0xaa) >> 1 | (b & 0x55) << 1);
}

static void des_blocks(const uint8_t key[8], const uint8_t *in, uint8_t *out, size_t n_blocks, bool encrypt) {
        DES_cblock k;
        DES_key_schedule ks;
        memcpy(k, key, 8);
        DES_set_key_unchecked(&k, &ks);
        for (size_t i = 0; i < n_blocks; i++)
                DES_ecb_encrypt((const_DES_cblock *) (in + 8 * i), (DES_cblock *) (out + 8 * i), &ks,
                                encrypt ? DES_ENCRYPT : DES_DECRYPT);
        OPENSSL_cleanse(&ks, sizeof ks);
        OPENSSL_cleanse(k, sizeof k);
}

static void password_block(const char *password, uint8_t ret[8]) {
        memset(ret, 0, 8);
        for (size_t i = 0; i < 8 && password[i]; i++)
                ret[i] = (uint8_t) password[i];
}

int rfb_auth_response(const char *password, const uint8_t challenge[RFB_CHALLENGE_SIZE],
                      uint8_t ret[RFB_CHALLENGE_SIZE]) {
        uint8_t key[8];
        password_block(password, key);
        for (int i = 0; i < 8; i++)
                key[i] = reverse_bits(key[i]);
        des_blocks(key, challenge, ret, 2, true);
        OPENSSL_cleanse(key, sizeof key);
        return 0;
}

/* vncpasswd's fixed key {23, 82, 107, 6, 35, 78, 88, 7}, bits reversed for
 * standard DES as above */
static const uint8_t file_key[8] = { 0xe8, 0x4a, 0xd6, 0x60, 0xc4, 0x72, 0x1a, 0xe0 };

int rfb_password_file_bytes(const char *password, uint8_t ret[8]) {
        uint8_t block[8];
        password_block(password, block);
        des_blocks(file_key, block, ret, 1, true);
        OPENSSL_cleanse(block, sizeof block);
        return 0;
}

int rfb_password_file_decode(const uint8_t bytes[8], char ret[RFB_PASSWORD_LEN + 1]) {
        uint8_t block[8];
        des_blocks(file_key, bytes, block, 1, false);
        memcpy(ret, block, 8);
        ret[8] = 0;
        OPENSSL_cleanse(block, sizeof block);
        return 0;
}

int rfb_password_new(char ret[RFB_PASSWORD_LEN + 1]) {
        static const char alphabet[] = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
        const size_t n = sizeof alphabet - 1; /* 56: no 0/O, 1/l/I */
        size_t i = 0;
        while (i < RFB_PASSWORD_LEN) {
                uint8_t b[16];
                int r = random_bytes(b, sizeof b);
                if (r < 0)
                        return err_set(r, "cannot get random bytes for a VNC password: %s", strerror(-r));
                for (size_t k = 0; k < sizeof b && i < RFB_PASSWORD_LEN; k++)
                        if (b[k] < 256 / n * n) /* no modulo bias */
                                ret[i++] = alphabet[b[k] % n];
        }
        ret[RFB_PASSWORD_LEN] = 0;
        return 0;
}

/* ---- the viewer's side ---- */

int rfb_serve_result(const RfbIo *io, int minor, const char *reason) {
        int r = write_u32(io, reason ? 1 : 0);
        if (r < 0 || !reason || minor < 8)
                return r;
        size_t n = MIN(strlen(reason), (size_t) RFB_REASON_MAX);
        r = write_u32(io, (uint32_t) n);
        return r < 0 ? r : io_write(io, reason, n);
}

int rfb_serve_auth(const RfbIo *io, const char *password, const uint8_t challenge[RFB_CHALLENGE_SIZE],
                   int *ret_minor) {
        uint8_t v[12], answer[RFB_CHALLENGE_SIZE], expected[RFB_CHALLENGE_SIZE];
        int minor, r = io_write(io, version_38, sizeof version_38);
        if (r < 0 || (r = io_read(io, v, sizeof v)) < 0)
                return r;
        if (rfb_version_parse(v, &minor) < 0)
                return err_set(-EPROTO, "the viewer does not speak RFB 3.x");
        if (minor >= 7) {
                uint8_t offer[2] = { 1, SEC_VNC_AUTH }, choice;
                if ((r = io_write(io, offer, sizeof offer)) < 0 || (r = io_read(io, &choice, 1)) < 0)
                        return r;
                if (choice != SEC_VNC_AUTH) {
                        (void) rfb_serve_result(io, minor, "only VNC Authentication (a password) is offered");
                        return err_set(-EPROTO, "the viewer chose security type %u, not VNC Authentication",
                                       choice);
                }
        } else if ((r = write_u32(io, SEC_VNC_AUTH)) < 0)
                return r;
        if ((r = io_write(io, challenge, RFB_CHALLENGE_SIZE)) < 0 || (r = io_read(io, answer, sizeof answer)) < 0)
                return r;
        rfb_auth_response(password, challenge, expected);
        bool ok = CRYPTO_memcmp(answer, expected, sizeof expected) == 0;
        OPENSSL_cleanse(expected, sizeof expected);
        if (!ok) {
                (void) rfb_serve_result(io, minor, "wrong password");
                return err_set(-EACCES, "the viewer gave a wrong password");
        }
        *ret_minor = minor;
        return 0;
}

/* ---- the server's side ---- */

/* A reason string from the server: bounded, and only its printable
 * characters go into the detail. */
static int read_reason(const RfbIo *io, const char *what) {
        uint32_t n;
        char text[RFB_REASON_MAX + 1];
        int r = read_u32(io, &n);
        if (r < 0)
                return r;
        if (n > RFB_REASON_MAX)
                return err_set(-EPROTO, "the desktop %s with a reason of %u bytes (more than %d)", what, n,
                               RFB_REASON_MAX);
        if ((r = io_read(io, text, n)) < 0)
                return r;
        for (uint32_t i = 0; i < n; i++)
                if ((unsigned char) text[i] < 0x20 || (unsigned char) text[i] > 0x7e)
                        text[i] = '?';
        text[n] = 0;
        return err_set(-EPROTO, "the desktop %s: '%s'", what, text);
}

int rfb_client_none(const RfbIo *io) {
        uint8_t v[12];
        int minor, r = io_read(io, v, sizeof v);
        if (r < 0)
                return r;
        if (rfb_version_parse(v, &minor) < 0)
                return err_set(-EPROTO, "the desktop does not speak RFB 3.x");
        char mine[13];
        snprintf(mine, sizeof mine, "RFB 003.%03d\n", minor);
        if ((r = io_write(io, mine, 12)) < 0)
                return r;
        if (minor == 3) {
                uint32_t type;
                if ((r = read_u32(io, &type)) < 0)
                        return r;
                if (type == 0)
                        return read_reason(io, "refused the connection");
                if (type != SEC_NONE)
                        return err_set(-EPROTO, "the desktop wants security type %u, not None", type);
                return 0;
        }
        uint8_t count, types[255];
        if ((r = io_read(io, &count, 1)) < 0)
                return r;
        if (count == 0)
                return read_reason(io, "refused the connection");
        if ((r = io_read(io, types, count)) < 0)
                return r;
        if (!memchr(types, SEC_NONE, count))
                return err_set(-EPROTO, "the desktop does not offer security type None (does it want a password?)");
        if ((r = write_u8(io, SEC_NONE)) < 0)
                return r;
        if (minor < 8)
                return 0; /* 3.7 sends no SecurityResult for None */
        uint32_t result;
        if ((r = read_u32(io, &result)) < 0)
                return r;
        if (result != 0)
                return read_reason(io, "refused security type None");
        return 0;
}
