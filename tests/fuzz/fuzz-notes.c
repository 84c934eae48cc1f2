/* SPDX-License-Identifier: MIT */
/* A session's small hand-over files (src/session/handoff-files.c), as read
 * back from $ROAM_HOME/sessions/NAME/: the grant and stale notes, the lease,
 * the handed-in file and the hand-over marker. Whatever a parser accepts is
 * within its bounds and comes back the same through its format. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "session/handoff.h"

static void check_grant(const uint8_t *data, size_t size) {
        GrantNote g, again;
        if (grant_note_parse((const char *) data, size, &g) < 0)
                return;
        if (strnlen(g.server, sizeof g.server) >= sizeof g.server || strlen(g.checkpoint) != ID_HEX_SIZE - 1 ||
            g.epoch < 0)
                abort();
        char *text = NULL;
        if (grant_note_format(&g, &text) < 0)
                abort();
        if (grant_note_parse(text, strlen(text), &again) < 0 || again.epoch != g.epoch ||
            strcmp(again.server, g.server) || strcmp(again.checkpoint, g.checkpoint))
                abort();
        free(text);
}

static void check_stale(const uint8_t *data, size_t size) {
        StaleNote n, again;
        if (stale_note_parse((const char *) data, size, &n) < 0)
                return;
        if (strnlen(n.server_owner, sizeof n.server_owner) >= sizeof n.server_owner)
                abort();
        char *text = NULL;
        if (stale_note_format(&n, &text) < 0)
                abort();
        if (stale_note_parse(text, strlen(text), &again) < 0 || again.epoch != n.epoch ||
            again.server_epoch != n.server_epoch || again.at != n.at || strcmp(again.server_owner, n.server_owner))
                abort();
        free(text);
}

static void check_lease(const uint8_t *data, size_t size) {
        uint64_t until;
        if (lease_parse((const char *) data, size, &until) < 0)
                return;
        if (until > INT64_MAX)
                abort();
        /* only digits, one newline at most at the end */
        for (size_t i = 0; i < size; i++)
                if (!(data[i] >= '0' && data[i] <= '9') && !(data[i] == '\n' && i == size - 1))
                        abort();
}

static void check_handed_in(const uint8_t *data, size_t size) {
        int64_t when;
        char file[64];
        memset(file, 'x', sizeof file);
        handed_in_parse((const char *) data, size, &when, file, sizeof file);
        if (when < 0 || strnlen(file, sizeof file) >= sizeof file || strchr(file, '\n'))
                abort();
        /* the file shown is bytes of the input */
        if (file[0] && !memmem(data, size, file, strlen(file)))
                abort();
        char none[1] = { 'x' };
        handed_in_parse((const char *) data, size, &when, none, sizeof none);
        if (none[0])
                abort();
}

static void check_marker(const uint8_t *data, size_t size) {
        HandoverMarker m, again;
        if (handover_marker_parse((const char *) data, size, &m) < 0)
                return;
        if (strnlen(m.kind, sizeof m.kind) >= sizeof m.kind)
                abort();
        if ((m.peer && strlen(m.peer) > HANDOVER_PEER_MAX) || (m.token && strlen(m.token) > HANDOVER_TOKEN_MAX) ||
            (m.checkpoint[0] && strlen(m.checkpoint) != ID_HEX_SIZE - 1))
                abort();
        char *text = NULL;
        if (handover_marker_format(&m, &text) < 0)
                abort();
        if (handover_marker_parse(text, strlen(text), &again) < 0 || strcmp(m.kind, again.kind) ||
            strcmp(m.checkpoint, again.checkpoint) || m.epoch != again.epoch || m.pid != again.pid ||
            m.pid_start != again.pid_start || !m.peer != !again.peer || !m.token != !again.token ||
            (m.peer && strcmp(m.peer, again.peer)) || (m.token && strcmp(m.token, again.token)))
                abort();
        free(text);
        handover_marker_done(&again);
        handover_marker_done(&m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        check_grant(data, size);
        check_stale(data, size);
        check_lease(data, size);
        check_handed_in(data, size);
        check_marker(data, size);
        return 0;
}
