/* SPDX-License-Identifier: MIT */
#include "desk-remote.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../basic/error.h"
#include "../basic/macro.h"
#include "../basic/util.h"
#include "../sync/remote.h"
#include "../sync/sync.h"

/* A receive's answer (ours or the far side's) into t. */
static void take_answer(json_t *j, DeskTransfer *t) {
        t->resumed = json_is_true(json_object_get(j, "resumed"));
        const char *ts = json_string_value(json_object_get(j, "ts")), *e = json_string_value(json_object_get(j, "error"));
        if (ts && name_is_valid(ts))
                snprintf(t->ts, sizeof t->ts, "%s", ts);
        if (e)
                snprintf(t->resume_error, sizeof t->resume_error, "%s", e);
        t->pid = json_member_u64(j, "pid");
        t->resume_ms = json_member_u64(j, "resume_ms");
}

int desk_send(SessionHost *h, const char *user, Remote *r, const char *on, DeskTransfer *ret) {
        uint64_t t0 = now_ms();
        DeskTransfer t = {};
        Store *s = session_host_store(h);
        const char *url = remote_url(r);
        /* before the desk stops: the far side takes a desk from hosts only */
        _cleanup_(json_decrefp) json_t *info = NULL;
        int k = remote_request_json(r, "GET", "/v1/info", NULL, "its /v1/info", &info, &t.wire_bytes, NULL);
        if (k >= 0 && !info)
                k = err_set(-EBADMSG, "%s: its /v1/info is not JSON", url);
        if (k < 0)
                return k;
        const char *role = json_string_value(json_object_get(info, "token_role"));
        if (role && !strcmp(role, "user"))
                return err_set(-EPERM, "%s takes a desk only with a host or admin token there, not a user's (a desk's "
                                       "checkpoint is restored by root in a terminal server others share); nothing "
                                       "was changed",
                               url);
        k = desk_lend(h, user, url, &t.checkpoint, &t.suspend, &t.suspended);
        if (k < 0)
                return k;
        /* the checkpoint travels as desk-in/USER there (a local ref names it
         * for the push, and goes) */
        char out[REF_NAME_MAX_LEN + 1], in[REF_NAME_MAX_LEN + 1], path[128], hex[ID_HEX_SIZE], what[160];
        snprintf(out, sizeof out, "desk-out/%s", user);
        desk_in_ref(user, in, sizeof in);
        id_to_hex(&t.checkpoint, hex);
        uint64_t t1 = now_ms();
        SyncStats st = {};
        SyncOptions so = { .overwrite = true };
        /* what it came from, when that came from there; else the top layer of
         * its terminal server, which the far side runs too: one pack */
        RoamId base;
        DeskInfo i;
        if (desk_base_checkpoint(h, user, &t.checkpoint, &base) >= 0 ||
            (desk_get(h, user, &i) >= 0 && i.n_layers > 0 && id_from_hex(i.layers[0], &base) >= 0)) {
                so.have = &base;
                so.n_have = 1;
        }
        err_clear();
        k = store_ref_set(s, out, &t.checkpoint, NULL);
        if (k >= 0)
                k = sync_push(s, r, out, in, &so, &st);
        if (store_ref_delete(s, out) < 0 && k >= 0)
                err_clear();
        t.sync_ms = now_ms() - t1;
        t.wire_bytes = st.wire_bytes;
        t.chunks_sent = st.chunks_sent;
        t.chunks_total = st.chunks_total;
        if (k < 0) {
                /* nothing there was changed: the desk is here again */
                char why[512];
                snprintf(why, sizeof why, "%s", err_message(k));
                err_clear();
                if (desk_unlend(h, user, &t.checkpoint) < 0)
                        return err_set(k, "cannot send the desk of '%s' to %s: %s; and it cannot be given back here: "
                                          "%s",
                                       user, url, why, err_message(-EIO));
                return err_set(k, "cannot send the desk of '%s' to %s: %s (it is suspended here again)", user, url,
                               why);
        }
        snprintf(path, sizeof path, "/v1/desks/%s/receive", user);
        snprintf(what, sizeof what, "the desk of '%s' at %s", user, url);
        json_t *body = json_pack("{s:s}", "id", hex), *ans = NULL;
        if (body && on && json_object_set_new(body, "on", json_string(on)) < 0) {
                json_decref(body);
                body = NULL;
        }
        if (!body)
                return -ENOMEM;
        bool answered = false;
        k = remote_request_json(r, "POST", path, body, what, &ans, &t.wire_bytes, &answered);
        if (k < 0 && !answered) {
                /* no answer: it may have taken the desk; it stays lent to it */
                char why[512];
                snprintf(why, sizeof why, "%s", err_message(k));
                return err_set(k, "the desk of '%s' went to %s but no answer came (%s): the desk is marked as moved "
                                  "there; run the same command again",
                               user, url, why);
        }
        if (k < 0) {
                /* any answer but 200: it did not take the desk */
                char why[512];
                snprintf(why, sizeof why, "%s", err_message(k));
                err_clear();
                int u = desk_unlend(h, user, &t.checkpoint);
                err_clear();
                return err_set(k, "%s (%s)", why,
                               u < 0 ? "and it could not be given back here" : "it is suspended here again");
        }
        take_answer(ans, &t);
        json_decref(ans);
        t.total_ms = now_ms() - t0;
        *ret = t;
        return 0;
}

/* The only running terminal server here, into ts. */
static int default_ts(SessionHost *h, char ts[static NAME_MAX_LEN + 1]) {
        SessionInfo *v = NULL;
        size_t n = 0, found = 0;
        int r = session_list(h, &v, &n);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++)
                if (v[i].config.terminal_server && v[i].row.state == SESSION_RUNNING && found++ == 0)
                        snprintf(ts, NAME_MAX_LEN + 1, "%s", v[i].row.name);
        session_info_list_free(v, n);
        if (found == 1)
                return 0;
        return err_set(found ? -EINVAL : -ESRCH,
                       found ? "%zu terminal servers run here: name one with --on TS"
                             : "no terminal server runs here (roam session create TS --image IMAGE "
                               "--terminal-server; roam session start TS)",
                       found);
}

int desk_fetch(SessionHost *h, const char *user, Remote *r, const char *label, const char *on,
               DeskTransfer *ret) {
        uint64_t t0 = now_ms();
        DeskTransfer t = {};
        Store *s = session_host_store(h);
        const char *url = remote_url(r);
        char ts[NAME_MAX_LEN + 1], path[128], what[160], hex[ID_HEX_SIZE];
        int k;
        if (on)
                snprintf(ts, sizeof ts, "%s", on);
        else if ((k = default_ts(h, ts)) < 0)
                return k;
        /* before the server gives it up: not here already, and ts runs its layers */
        DeskInfo here;
        k = desk_get(h, user, &here);
        if (k >= 0 && !here.away)
                return err_set(-EEXIST, "the desk of '%s' is here already (%s on '%s')", user,
                               desk_info_state(&here), here.ts);
        if (k < 0 && k != -ENOENT)
                return k;
        err_clear();
        snprintf(path, sizeof path, "/v1/desks/%s", user);
        snprintf(what, sizeof what, "the desk of '%s' at %s", user, url);
        _cleanup_(json_decrefp) json_t *info = NULL;
        k = remote_request_json(r, "GET", path, NULL, what, &info, &t.wire_bytes, NULL);
        if (k >= 0 && !info)
                k = err_set(-EBADMSG, "%s: the answer is not JSON", what);
        if (k < 0)
                return k;
        k = desk_check_layers(h, user, json_object_get(info, "layers"), ts);
        if (k < 0)
                return k;
        /* the server suspends it (when it runs) and marks it as here */
        snprintf(path, sizeof path, "/v1/desks/%s/lend", user);
        json_t *ans = NULL;
        k = remote_post_json(r, path, json_pack("{s:s}", "to", label), what, &ans, &t.wire_bytes);
        if (k < 0)
                return k;
        const char *ck = json_string_value(json_object_get(ans, "id"));
        if (!ck || id_from_hex(ck, &t.checkpoint) < 0) {
                json_decref(ans);
                return err_set(-EBADMSG, "%s lent the desk of '%s' without naming its checkpoint", url, user);
        }
        t.suspended = json_is_true(json_object_get(ans, "suspended"));
        t.suspend.bytes = json_member_u64(ans, "bytes");
        t.suspend.total_ms = json_member_u64(ans, "suspend_ms");
        json_decref(ans);
        uint64_t t1 = now_ms();
        char in[REF_NAME_MAX_LEN + 1];
        desk_in_ref(user, in, sizeof in);
        SyncStats st = {};
        SyncOptions so = {};
        /* what this host sent there before, else the top layer of the desk's
         * terminal server, which runs here too (checked above): one pack */
        RoamId base;
        const char *top = json_string_value(json_array_get(json_object_get(info, "layers"), 0));
        if (desk_base_checkpoint(h, user, NULL, &base) >= 0 || (top && id_from_hex(top, &base) >= 0)) {
                so.have = &base;
                so.n_have = 1;
        }
        k = sync_pull_object(s, r, &t.checkpoint, in, &so, &st);
        t.sync_ms = now_ms() - t1;
        t.wire_bytes += st.wire_bytes;
        t.chunks_sent = st.chunks_sent;
        t.chunks_total = st.chunks_total;
        DeskMoveStats rs = {};
        if (k >= 0)
                k = desk_receive(h, user, &t.checkpoint, ts, &rs, t.ts);
        if (k < 0) {
                /* not taken here: the server has it again */
                char why[512];
                snprintf(why, sizeof why, "%s", err_message(k));
                err_clear();
                snprintf(path, sizeof path, "/v1/desks/%s/unlend", user);
                int u = remote_post_json(r, path, json_pack("{s:s}", "id", id_to_hex(&t.checkpoint, hex)), what, NULL,
                                         &t.wire_bytes);
                err_clear();
                return err_set(k, "cannot take the desk of '%s' from %s: %s (%s)", user, url, why,
                               u < 0 ? "it stays marked as lent there: 'roam desk offline' again, or give it back "
                                       "there with POST /v1/desks/USER/unlend"
                                     : "it is suspended there again");
        }
        if (k == 1) {
                snprintf(t.resume_error, sizeof t.resume_error, "%s", err_message(-EIO));
                err_clear();
        }
        t.resumed = k == 0;
        if (t.resumed) {
                t.pid = rs.pid;
                t.resume_ms = rs.total_ms;
        } else
                snprintf(t.ts, sizeof t.ts, "%s", ts);
        t.total_ms = now_ms() - t0;
        *ret = t;
        return 0;
}
