/* SPDX-License-Identifier: MIT */
#pragma once

/* WebSocket (RFC 6455), server side: the handshake key, a frame parser that
 * never trusts its input (pure, fuzzed: tests/fuzz/fuzz-websocket.c), frame
 * headers, and a bridge that carries binary messages between a WebSocket
 * client and a byte stream (the web console's VNC proxy).
 *
 *   client                              server (roam serve)
 *   GET ... Upgrade: websocket
 *       Sec-WebSocket-Key: K      ──▶   ws_accept_key(K) -> A
 *                                 ◀──   101, Sec-WebSocket-Accept: A
 *   frames, masked (required)     ──▶   ws_frame_parse(), ws_unmask()
 *                                 ◀──   frames, unmasked: ws_frame_header()
 *
 * Limits: a client frame's payload is at most WS_FRAME_MAX (-EMSGSIZE past
 * it; the bridge then closes with 1009), control frames at most 125 bytes and
 * never fragmented, lengths in their shortest encoding, reserved bits zero
 * (no extensions are negotiated). */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define WS_ACCEPT_SIZE 29 /* 28 base64 characters and the NUL */
#define WS_HEADER_MAX 14  /* 2 + 8 (length) + 4 (mask) */
#define WS_CONTROL_MAX 125
#define WS_FRAME_MAX ((size_t) 256 * 1024)

typedef enum WsOpcode {
        WS_OP_CONTINUATION = 0x0,
        WS_OP_TEXT = 0x1,
        WS_OP_BINARY = 0x2,
        WS_OP_CLOSE = 0x8,
        WS_OP_PING = 0x9,
        WS_OP_PONG = 0xA,
} WsOpcode;

/* Close codes (RFC 6455, 7.4.1) the bridge sends. */
#define WS_CLOSE_NORMAL 1000
#define WS_CLOSE_GOING_AWAY 1001
#define WS_CLOSE_PROTOCOL_ERROR 1002
#define WS_CLOSE_UNSUPPORTED 1003
#define WS_CLOSE_TOO_BIG 1009

typedef struct WsFrame {
        bool fin;
        WsOpcode opcode;
        bool masked;
        uint8_t mask[4];
        size_t header_len;
        const uint8_t *payload; /* points into the parsed buffer; still masked */
        size_t len;
} WsFrame;

/* Sec-WebSocket-Accept for the client's Sec-WebSocket-Key: base64(SHA-1(key
 * + WS_GUID)). -EINVAL unless key is the base64 of 16 bytes (24 characters). */
int ws_accept_key(const char *key, char ret[WS_ACCEPT_SIZE]);

/* Parses the frame at the front of buf (len bytes). Returns its total size
 * (header + payload, > 0) and fills *ret; 0 when buf does not hold a whole
 * frame yet; -EBADMSG for a protocol error (reserved bits or opcodes, an
 * unmasked frame when require_mask, a fragmented or long control frame, a
 * length not in its shortest form or with the top bit set); -EMSGSIZE for a
 * payload over max_payload (known from the header alone). *ret is written
 * only when a frame is returned. */
ssize_t ws_frame_parse(const uint8_t *buf, size_t len, size_t max_payload, bool require_mask, WsFrame *ret);

/* XORs len bytes with the mask (in place). */
void ws_unmask(uint8_t *payload, size_t len, const uint8_t mask[4]);

/* Fragmentation across frames: *in_message says whether a fragmented data
 * message is open. -EBADMSG for a continuation without a message, or a new
 * data frame while one is open; control frames pass (they may interleave). */
int ws_frame_sequence(bool *in_message, const WsFrame *f);

/* The payload of a close frame (unmasked): *ret_code is its status code, or
 * 1005 (none given) when empty. -EBADMSG for a 1-byte payload, a code that
 * may not be sent (below 1000, 1004-1006, 1015, 1016-2999, 5000 and above)
 * or a reason that is not UTF-8. */
int ws_close_parse(const uint8_t *payload, size_t len, uint16_t *ret_code);

/* Writes an unmasked server frame header for a payload of len bytes into
 * out; returns its size (2, 4 or 10). */
size_t ws_frame_header(uint8_t out[WS_HEADER_MAX], WsOpcode op, bool fin, uint64_t len);

/* True when the caller wants the bridge to end (polled every 250 ms). */
typedef bool (*WsStopFn)(void *userdata);

/* Carries bytes between a WebSocket client on ws_fd (extra: bytes already
 * read from it) and a byte stream on peer_fd until either side closes, a
 * protocol error, or stop() says so; then sends a close frame (1000 when the
 * peer closed, 1001 on stop, 1002/1003/1009 for the client's errors). The
 * client's binary (and continuation) frames go to peer_fd as their payload;
 * the peer's bytes go to the client as binary frames; pings are answered.
 * Neither fd is closed. Returns 0 on an orderly end, else a negative errno. */
int ws_bridge(int ws_fd, const void *extra, size_t extra_len, int peer_fd, WsStopFn stop, void *stop_userdata);
