/* SPDX-License-Identifier: MIT */
#pragma once

/* The opening of the RFB protocol (RFC 6143 §7.1-7.2) as `roam session
 * connect` speaks it, on both of its sides:
 *
 *   viewer (TigerVNC, Remmina, vncsnapshot)      roam session connect        QEMU (through the daemon)
 *     <- "RFB 003.008\n"                                                       (unix socket, no password)
 *     -> "RFB 003.00M\n"   M = 3, 7 or 8
 *     <- [1, 2] (3.7+) or u32 2 (3.3)     VNC Authentication only
 *     -> 2 (3.7+)
 *     <- 16-byte challenge (fresh random)
 *     -> DES(challenge, password)         checked here: rfb_serve_auth()
 *                                          then the upstream: rfb_client_none()
 *                                            <- "RFB 003.00N\n"
 *                                            -> "RFB 003.00min(N,8)\n"
 *                                            <- security types (or a reason)
 *                                            -> 1 (None)
 *                                            <- u32 0 (3.8)
 *     <- u32 0, or 1 + reason (3.8)       rfb_serve_result()
 *   ClientInit, ServerInit and everything after: relayed byte for byte
 *
 * Both sides speak through an RfbIo so that the fuzzer drives them from a
 * buffer. Every length read (reason strings, type counts) is bounded. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RFB_PASSWORD_LEN 8 /* VNC Authentication uses at most 8 characters */
#define RFB_CHALLENGE_SIZE 16
#define RFB_REASON_MAX 1024 /* longer reasons from a server are refused */

typedef struct RfbIo {
        /* exactly n bytes: 0, or a negative errno (-ECONNRESET at an early end) */
        int (*read)(void *userdata, void *buf, size_t n);
        int (*write)(void *userdata, const void *buf, size_t n);
        void *userdata;
} RfbIo;

/* "RFB 003.008\n" -> 8. Only major 3; minors 3-6 count as 3 (RFC 6143 §7.1.1:
 * unknown minors are treated as 3.3), 7 as 7, 8 and up as 8. -EPROTO for
 * anything else. */
int rfb_version_parse(const uint8_t buf[12], int *ret_minor);

/* The viewer's side up to its proof of the password: sends the version,
 * offers VNC Authentication only, sends challenge, checks the answer against
 * password (NUL-terminated, up to RFB_PASSWORD_LEN used). 0 with *ret_minor
 * when the answer was right (the result is not sent yet: rfb_serve_result());
 * -EACCES for a wrong password (the failure is sent); -EPROTO for a viewer
 * that speaks something else; an errno of io. */
int rfb_serve_auth(const RfbIo *io, const char *password, const uint8_t challenge[RFB_CHALLENGE_SIZE],
                   int *ret_minor);
/* The SecurityResult for a viewer at minor: OK when reason is NULL, else a
 * failure (3.8 viewers get the reason, bounded to RFB_REASON_MAX). */
int rfb_serve_result(const RfbIo *io, int minor, const char *reason);

/* The server's side (QEMU's VNC with no password) up to where ClientInit
 * goes: version, security type None. -EPROTO with a detail for a server that
 * refuses, wants a password or speaks something else; its reason is quoted
 * (printable characters only). */
int rfb_client_none(const RfbIo *io);

/* The VNC Authentication answer: DES-ECB of the challenge with the password
 * (first 8 bytes, NUL padded, bits of each byte reversed) as the key. */
int rfb_auth_response(const char *password, const uint8_t challenge[RFB_CHALLENGE_SIZE],
                      uint8_t ret[RFB_CHALLENGE_SIZE]);
/* The 8 bytes of a VNC password file (vncpasswd's format, read by TigerVNC's
 * and vncsnapshot's -passwd): the password DES-encrypted with the fixed key
 * every VNC viewer knows. Obfuscation, not protection: keep the file 0600. */
int rfb_password_file_bytes(const char *password, uint8_t ret[8]);
/* The inverse, for tests: NUL-terminated, up to 8 characters. */
int rfb_password_file_decode(const uint8_t bytes[8], char ret[RFB_PASSWORD_LEN + 1]);

/* A fresh random password of RFB_PASSWORD_LEN letters and digits. */
int rfb_password_new(char ret[RFB_PASSWORD_LEN + 1]);
