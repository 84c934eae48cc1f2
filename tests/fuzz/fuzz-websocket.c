/* SPDX-License-Identifier: MIT */
/* The WebSocket frame parser (src/http/websocket.h) as the bridge drives it:
 * frames one after another from a byte stream, masking required, the
 * fragmentation rules across frames, close payloads. The first byte picks the
 * payload limit (so that -EMSGSIZE is reached with small inputs) and whether
 * masking is required; the rest is the stream. Every accepted frame must lie
 * inside the input, respect the limits, and survive a round trip through
 * ws_frame_header() (for an unmasked header). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/websocket.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static bool checked;
        if (!checked) { /* the example of RFC 6455, 1.3 */
                char a[WS_ACCEPT_SIZE];
                if (ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", a) < 0 || strcmp(a, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="))
                        abort();
                checked = true;
        }
        if (size < 1)
                return 0;
        size_t max = (data[0] & 0x7f) ? (size_t) (data[0] & 0x7f) * 64 : WS_FRAME_MAX;
        bool require_mask = !(data[0] & 0x80);
        data++, size--;
        uint8_t *buf = malloc(size ? size : 1);
        if (!buf)
                return 0;
        memcpy(buf, data, size);
        size_t pos = 0;
        bool in_message = false;
        for (;;) {
                WsFrame f;
                memset(&f, 0x5a, sizeof f);
                ssize_t n = ws_frame_parse(buf + pos, size - pos, max, require_mask, &f);
                if (n <= 0) {
                        if (f.len != (size_t) 0x5a5a5a5a5a5a5a5aull)
                                abort(); /* written without a frame */
                        break;
                }
                if ((size_t) n > size - pos || f.header_len < 2 || f.header_len > WS_HEADER_MAX ||
                    f.header_len + f.len != (size_t) n || f.len > max || f.payload != buf + pos + f.header_len)
                        abort();
                if (require_mask && !f.masked)
                        abort();
                if ((f.opcode & 0x8) && (!f.fin || f.len > WS_CONTROL_MAX))
                        abort();
                /* the same frame's header written by us parses to the same frame */
                uint8_t h[WS_HEADER_MAX + WS_CONTROL_MAX];
                size_t hl = ws_frame_header(h, f.opcode, f.fin, f.len);
                if (hl != f.header_len - (f.masked ? 4 : 0))
                        abort();
                ws_unmask((uint8_t *) f.payload, f.len, f.mask);
                if (ws_frame_sequence(&in_message, &f) < 0)
                        break;
                if (f.opcode == WS_OP_CLOSE) {
                        uint16_t code = 0;
                        if (ws_close_parse(f.payload, f.len, &code) >= 0 && f.len == 0 && code != 1005)
                                abort();
                        break;
                }
                pos += (size_t) n;
        }
        free(buf);
        char accept[WS_ACCEPT_SIZE];
        char key[25];
        if (size >= 24) {
                memcpy(key, data, 24);
                key[24] = 0;
                if (ws_accept_key(key, accept) == 0 && strlen(accept) != WS_ACCEPT_SIZE - 1)
                        abort();
        }
        return 0;
}
