/* SPDX-License-Identifier: MIT */
/* The small files of a session's hand-overs ($ROAM_HOME/sessions/NAME/:
 * grant, stale, lease, handed-in, handover): their formats and parsers, kept
 * apart from the daemon's state so that tests/fuzz/fuzz-notes.c can give
 * them any bytes. */
#include "handoff.h"

#include <errno.h>
#include <stdbool.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../basic/macro.h"
#include "../basic/util.h"

/* text (not NUL-ended, at most len bytes) as JSON: an object, or NULL */
static json_t *load_object(const char *text, size_t len) {
        json_t *j = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL);
        if (j && !json_is_object(j)) {
                json_decref(j);
                return NULL;
        }
        return j;
}

static char *dump(json_t *j) {
        char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
        json_decref(j);
        return text;
}

int grant_note_format(const GrantNote *g, char **ret) {
        *ret = dump(json_pack("{s:s, s:I, s:s}", "server", g->server, "epoch", (json_int_t) g->epoch, "checkpoint",
                              g->checkpoint));
        return *ret ? 0 : -ENOMEM;
}

int grant_note_parse(const char *text, size_t len, GrantNote *ret) {
        _cleanup_(json_decrefp) json_t *j = load_object(text, len);
        const char *server = json_string_value(json_object_get(j, "server"));
        const char *ck = json_string_value(json_object_get(j, "checkpoint"));
        json_t *e = json_object_get(j, "epoch");
        RoamId id;
        if (!server || strlen(server) >= sizeof ret->server || !ck || id_from_hex(ck, &id) < 0 ||
            !json_is_integer(e) || json_integer_value(e) < 0)
                return -EBADMSG;
        GrantNote g = { .epoch = (int64_t) json_integer_value(e) };
        snprintf(g.server, sizeof g.server, "%s", server);
        id_to_hex(&id, g.checkpoint);
        *ret = g;
        return 0;
}

int stale_note_format(const StaleNote *n, char **ret) {
        *ret = dump(json_pack("{s:I, s:I, s:s, s:I}", "epoch", (json_int_t) n->epoch, "server_epoch",
                              (json_int_t) n->server_epoch, "server_owner", n->server_owner, "at", (json_int_t) n->at));
        return *ret ? 0 : -ENOMEM;
}

int stale_note_parse(const char *text, size_t len, StaleNote *ret) {
        _cleanup_(json_decrefp) json_t *j = load_object(text, len);
        json_t *e = json_object_get(j, "epoch"), *se = json_object_get(j, "server_epoch"), *at = json_object_get(j, "at");
        const char *owner = json_string_value(json_object_get(j, "server_owner"));
        if (!json_is_integer(e) || !json_is_integer(se) || !json_is_integer(at) || !owner ||
            strlen(owner) >= sizeof ret->server_owner)
                return -EBADMSG;
        StaleNote n = { .epoch = (int64_t) json_integer_value(e), .server_epoch = (int64_t) json_integer_value(se),
                        .at = (int64_t) json_integer_value(at) };
        snprintf(n.server_owner, sizeof n.server_owner, "%s", owner);
        *ret = n;
        return 0;
}

int lease_parse(const char *text, size_t len, uint64_t *ret_until) {
        char buf[32];
        /* "UNTIL\n": decimal seconds since the epoch, one newline at most */
        if (len > 0 && text[len - 1] == '\n')
                len--;
        if (len == 0 || len >= sizeof buf || memchr(text, 0, len))
                return -EBADMSG;
        memcpy(buf, text, len);
        buf[len] = 0;
        uint64_t until;
        if (parse_u64(buf, &until) < 0 || until > INT64_MAX) /* compared with time(NULL) */
                return -EBADMSG;
        *ret_until = until;
        return 0;
}

void handed_in_parse(const char *text, size_t len, int64_t *ret_when, char *file, size_t file_size) {
        /* "WHEN FILE\n"; whatever is not that is shown as it is (when 0) */
        size_t i = 0;
        int64_t when = 0;
        bool overflow = false;
        while (i < len && text[i] >= '0' && text[i] <= '9' && !overflow) {
                int d = text[i++] - '0';
                overflow = when > (INT64_MAX - d) / 10; /* fuzz-notes found it */
                when = overflow ? 0 : when * 10 + d;
        }
        if (overflow || i == 0 || i >= len || text[i] != ' ') {
                when = 0;
                i = 0;
        } else
                i++;
        size_t n = 0;
        while (i + n < len && text[i + n] != '\n' && text[i + n] != 0)
                n++;
        if (file_size > 0) {
                size_t k = MIN(n, file_size - 1);
                memcpy(file, text + i, k);
                file[k] = 0;
        }
        *ret_when = when;
}

int handover_marker_format(const HandoverMarker *m, char **ret) {
        *ret = dump(json_pack("{s:s, s:s?, s:s?, s:I, s:s?, s:I, s:I}", "kind", m->kind, "peer", m->peer, "token",
                              m->token, "epoch", (json_int_t) m->epoch, "checkpoint",
                              m->checkpoint[0] ? m->checkpoint : NULL, "pid", (json_int_t) m->pid, "pid_start",
                              (json_int_t) m->pid_start));
        return *ret ? 0 : -ENOMEM;
}

static int opt_string(json_t *j, const char *key, size_t max, char **ret) {
        json_t *v = json_object_get(j, key);
        *ret = NULL;
        if (!v || json_is_null(v))
                return 0;
        const char *s = json_string_value(v);
        if (!s || strlen(s) > max)
                return -EBADMSG;
        *ret = strdup(s);
        return *ret ? 0 : -ENOMEM;
}

static int64_t opt_int(json_t *j, const char *key) {
        json_t *v = json_object_get(j, key);
        return json_is_integer(v) ? (int64_t) json_integer_value(v) : 0;
}

int handover_marker_parse(const char *text, size_t len, HandoverMarker *ret) {
        _cleanup_(json_decrefp) json_t *j = load_object(text, len);
        HandoverMarker m = {};
        const char *kind = json_string_value(json_object_get(j, "kind"));
        const char *ck = json_string_value(json_object_get(j, "checkpoint"));
        RoamId id;
        if (!kind || strlen(kind) >= sizeof m.kind || (ck && id_from_hex(ck, &id) < 0))
                return -EBADMSG;
        snprintf(m.kind, sizeof m.kind, "%s", kind);
        if (ck)
                id_to_hex(&id, m.checkpoint);
        int r = opt_string(j, "peer", HANDOVER_PEER_MAX, &m.peer);
        if (r >= 0)
                r = opt_string(j, "token", HANDOVER_TOKEN_MAX, &m.token);
        if (r < 0) {
                handover_marker_done(&m);
                return r;
        }
        m.epoch = opt_int(j, "epoch");
        m.pid = opt_int(j, "pid");
        m.pid_start = opt_int(j, "pid_start");
        *ret = m;
        return 0;
}

void handover_marker_done(HandoverMarker *m) {
        free(m->peer);
        free(m->token);
        m->peer = m->token = NULL;
}
