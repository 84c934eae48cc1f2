/* SPDX-License-Identifier: MIT */
#include "move.h"
#include "handoff.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "../basic/error.h"
#include "../basic/failpoint.h"
#include "../basic/macro.h"
#include "../basic/util.h"
#include "../sync/pack-out.h"

/* Pushes the session's latest checkpoint to the remote under the staging ref
 * sessions/USER/NAME/in-eEPOCH: the target's own refs (latest, numbered) are
 * never overwritten by a sender; a refused (stale) sender's state stays there
 * as a separate checkpoint an admin can inspect or restore. */
static int push_checkpoint(SessionHost *h, Store *s, Remote *r, const char *user, const char *name, int64_t epoch,
                           const SessionMoveOptions *o, const RoamId *have, uint64_t *wire, uint64_t *chunks,
                           uint64_t *paged) {
        char latest[REF_NAME_MAX_LEN + 1], staging[REF_NAME_MAX_LEN + 1];
        snprintf(latest, sizeof latest, "sessions/%s/%s/latest", user, name);
        snprintf(staging, sizeof staging, "sessions/%s/%s/in-e%lld", user, name, (long long) epoch);
        /* only this host writes the staging ref; with have (the pre-copy this
         * move pushed) the remainder goes as one pack that also sets it */
        SyncOptions so = { .parallel = o->parallel, .overwrite = true, .have = have, .n_have = have ? 1 : 0 };
        SyncStats st;
        int k = sync_push(s, r, latest, staging, &so, &st);
        if (k < 0)
                return k;
        *wire += st.wire_bytes;
        *chunks += st.chunks_sent;
        if (paged)
                *paged += st.chunks_paged;
        return 0;
}

/* The target's answer to a move-in: running, with its restore's figures. */
static int move_in_answer(Remote *r, const char *name, json_t *j, SessionMoveResult *res) {
        int k;
        json_t *ns = json_object_get(j, "restore_ns");
        res->target_restore_ns = json_is_integer(ns) ? (uint64_t) json_integer_value(ns) : 0;
        res->target_ram_staged = json_is_true(json_object_get(j, "ram_staged"));
        res->target_warm = json_is_true(json_object_get(j, "qemu_waiting"));
        const char *state = json_string_value(json_object_get(j, "state"));
        k = state && !strcmp(state, "running") ? 0 : -EPROTO;
        json_decref(j);
        if (k < 0)
                return err_set(k, "%s did not confirm that session '%s' runs", remote_url(r), name);
        return 0;
}

/* The hand-over's line: from_epoch = the epoch this host owns the session
 * at (the target refuses a sender whose ownership it knows to be over). */
static json_t *move_in_line(const RoamId *ck, int64_t epoch) {
        char hex[ID_HEX_SIZE];
        return json_pack("{s:s, s:I, s:I}", "checkpoint", id_to_hex(ck, hex), "epoch", (json_int_t) epoch,
                         "from_epoch", (json_int_t) (epoch - 1));
}

static int request_move_in(Remote *r, const char *name, const RoamId *ck, int64_t epoch, SessionMoveResult *res,
                           uint64_t *wire) {
        char path[256], what[128];
        snprintf(path, sizeof path, "/v1/sessions/%s/move-in", name);
        snprintf(what, sizeof what, "session '%s'", name);
        json_t *j = NULL;
        int k = remote_post_json(r, path, move_in_line(ck, epoch), what, &j, wire);
        if (k < 0)
                return k;
        return move_in_answer(r, name, j, res);
}

/* The final round in one request (docs/sync-protocol.md, "Move-in with the
 * remainder"): the move-in, then what the target lacks below the final
 * checkpoint ck beyond the pre-copy it holds, as an upload that also sets the
 * staging ref. Not taken (nothing changed there): -E2BIG (more than a
 * remainder: not sent), -ENODATA (a fleet member, chunks as pages that did
 * not rebuild there), -EBADMSG or -EFBIG (an older target); the caller then
 * pushes and moves in as two requests. */
static bool remainder_not_taken(int k) {
        return k == -E2BIG || k == -ENODATA || k == -EBADMSG || k == -EFBIG;
}

/* The answer to a move-in that carried its remainder (taken: freed here);
 * sent: the pack's chunks, of them as pages, objects as deltas. */
static int move_in_reply(Remote *r, const char *name, RemoteResponse *resp, const uint64_t sent[static 3],
                         SessionMoveResult *res) {
        res->final_wire_bytes += resp->wire_bytes;
        if (resp->status != 200) {
                char what[128];
                snprintf(what, sizeof what, "session '%s'", name);
                int k = remote_status_error(r, resp, what);
                remote_response_done(resp);
                return k;
        }
        res->final_chunks += sent[0];
        res->final_paged += sent[1];
        res->final_deltas += sent[2];
        res->remainder_with_move_in = true;
        json_t *j = json_loadb((const char *) resp->body, resp->len, 0, NULL);
        remote_response_done(resp);
        return move_in_answer(r, name, j, res);
}

static ssize_t pack_read(void *userdata, void *buf, size_t max) {
        return pack_out_read(userdata, buf, max);
}

/* Sends the move-in with its remainder: made by po while it goes (bound:
 * the most it can be), or body (len bytes) made whole. */
static int move_in_send(Remote *r, const char *name, PackOut *po, uint64_t bound, const void *body, size_t len,
                        RemoteResponse *resp) {
        char path[256];
        snprintf(path, sizeof path, "/v1/sessions/%s/move-in", name);
        failpoint("move:after-push"); /* the remainder ready to go with the move-in */
        const char *type = "application/octet-stream";
        if (po)
                return remote_request_stream(r, "POST", path, pack_read, po, bound, type, 64 * 1024, resp);
        _cleanup_(remote_conn_freep) RemoteConn *c = remote_conn_new(r);
        if (!c)
                return -ENOMEM;
        return remote_request(c, "POST", path, body, len, type, 64 * 1024, resp);
}

/* The move-in with its remainder made while it is sent: the records leave
 * as the pack's threads make them, so the link carries the first while the
 * last are still read and turned into pages (for the 2 GiB desktop the
 * whole pack took 140-170 ms to make before its first byte went). The
 * signature, over the body's hash, follows it as trailer fields.
 * -ECANCELED when the body could not be made and -EKEYEXPIRED when the
 * server refused the nonce: nothing was carried out, and the caller sends
 * it the buffered way (signed again). */
static int move_in_streamed(Store *s, Remote *r, const char *name, json_t *line, const RoamId *precopy,
                            const SyncUploadPlan *plan, SessionMoveResult *res) {
        uint64_t t0 = now_ns();
        _cleanup_(sync_upload_plan_freep) SyncUploadPlan *own = NULL;
        int k = 0;
        if (!plan) {
                k = sync_upload_plan_new(s, precopy, 1, false, &own);
                plan = own;
        }
        _cleanup_(pack_out_freep) PackOut *po = NULL;
        if (k >= 0)
                k = sync_upload_stream(s, &res->checkpoint, plan, line, &po);
        res->remainder_ns = now_ns() - t0;
        if (k < 0)
                return k;
        PackOutStats st;
        pack_out_stats(po, &st);
        RemoteResponse resp;
        k = move_in_send(r, name, po, st.bound, NULL, 0, &resp);
        if (k < 0)
                return k;
        pack_out_stats(po, &st);
        res->remainder_made_ns = st.made_ns;
        res->remainder_streamed = resp.status == 200;
        return move_in_reply(r, name, &resp, (const uint64_t[3]){ st.n_chunks, st.n_paged, st.n_delta }, res);
}

/* The remainder built whole, then sent with the move-in. */
static int move_in_buffered(Store *s, Remote *r, const char *name, json_t *line, const RoamId *precopy,
                            SessionMoveResult *res) {
        _cleanup_(sync_upload_done) SyncUpload u = { 0 };
        uint64_t t0 = now_ns();
        int k = sync_upload_build(s, &res->checkpoint, NULL, precopy, 1, false, &u);
        res->remainder_ns = now_ns() - t0;
        if (k < 0)
                return k;
        if (u.n_bases && json_object_set_new(line, "bases", json_integer((json_int_t) u.n_bases)) < 0)
                return -ENOMEM;
        _cleanup_free_ char *text = json_dumps(line, JSON_COMPACT);
        size_t tlen = text ? strlen(text) : 0;
        _cleanup_free_ uint8_t *body = text ? malloc(tlen + 1 + u.len) : NULL;
        if (!body)
                return -ENOMEM;
        memcpy(body, text, tlen);
        body[tlen] = '\n';
        memcpy(body + tlen + 1, u.body, u.len);
        RemoteResponse resp;
        k = move_in_send(r, name, NULL, 0, body, tlen + 1 + u.len, &resp);
        if (k < 0)
                return k;
        return move_in_reply(r, name, &resp, (const uint64_t[3]){ u.chunks, u.paged, u.deltas }, res);
}

/* plan: made from the pre-copy before the pause (NULL: made here) */
static int move_in_with_remainder(Store *s, Remote *r, const char *user, const char *name, const RoamId *ck,
                                  int64_t epoch, const RoamId *precopy, bool stream, const SyncUploadPlan *plan,
                                  SessionMoveResult *res) {
        char staging[REF_NAME_MAX_LEN + 1];
        snprintf(staging, sizeof staging, "sessions/%s/%s/in-e%lld", user, name, (long long) epoch);
        _cleanup_(json_decrefp) json_t *line = move_in_line(ck, epoch);
        if (!line || json_object_set_new(line, "ref", json_string(staging)) < 0)
                return -ENOMEM;
        if (stream) {
                _cleanup_(json_decrefp) json_t *copy = json_deep_copy(line);
                if (!copy)
                        return -ENOMEM;
                int k = move_in_streamed(s, r, name, copy, precopy, plan, res);
                /* not carried out: the body could not be made, the nonce was
                 * refused, there is no digest signer, or the server refused
                 * the request as malformed (400: an older server, or the
                 * trailer with the signature dropped on the way) */
                if (k != -ECANCELED && k != -EKEYEXPIRED && k != -EOPNOTSUPP && k != -EBADMSG)
                        return k;
                err_clear(); /* the buffered way */
        }
        return move_in_buffered(s, r, name, line, precopy, res);
}

/* Asks the target to write the pre-copy's RAM file ahead of the move-in
 * (session_stage_ram() there), so that its restore writes only what the
 * final round changed. Best effort: a target that cannot only restores
 * slower. */
static void request_stage(Remote *r, const char *name, const RoamId *ck, uint64_t *wire) {
        char hex[ID_HEX_SIZE], path[256], what[128];
        snprintf(path, sizeof path, "/v1/sessions/%s/stage", name);
        snprintf(what, sizeof what, "staging session '%s'", name);
        (void) remote_post_json(r, path, json_pack("{s:s}", "checkpoint", id_to_hex(ck, hex)), what, NULL, wire);
        err_clear();
}

static int move(SessionHost *h, const char *name, Remote *r, const SessionMoveOptions *o, SessionMoveResult *ret);

int session_move(SessionHost *h, const char *name, Remote *r, const SessionMoveOptions *o, SessionMoveResult *ret) {
        handoff_busy_begin(h, name);
        int k = move(h, name, r, o, ret);
        handoff_busy_end(h, name);
        return k;
}

static int move(SessionHost *h, const char *name, Remote *r, const SessionMoveOptions *o, SessionMoveResult *ret) {
        static const SessionMoveOptions defaults = { 0 };
        if (!o)
                o = &defaults;
        uint64_t t0 = now_ns();
        SessionInfo info = { 0 };
        int k = session_get(h, name, &info);
        if (k < 0)
                return k;
        _cleanup_free_ char *user = strdup(info.row.user);
        int64_t epoch = info.row.epoch;
        bool local = !strcmp(info.row.owner, SESSION_OWNER_LOCAL);
        SessionState state = info.row.state;
        session_info_done(&info);
        if (!user)
                return -ENOMEM;
        if (!local)
                return err_set(-EPERM, "session '%s' is not owned here (see 'roam session show %s')", name, name);
        if (state != SESSION_RUNNING && state != SESSION_PAUSED)
                return err_set(-EINVAL, "session '%s' is not running (start or restore it first)", name);
        Store *s = session_host_store(h);
        SessionMoveResult res = { .epoch = epoch + 1 };
        SessionCheckpointResult ck;
        RoamId precopy = ID_NULL;

        /* pre-copy: most chunks move while the guest keeps running */
        if (!o->no_precopy) {
                uint64_t chunks = 0;
                k = session_checkpoint(h, name, 0, &ck);
                if (k < 0)
                        return k;
                k = push_checkpoint(h, s, r, user, name, epoch + 1, o, NULL, &res.precopy_wire_bytes, &chunks,
                                    NULL);
                if (k < 0)
                        return k;
                precopy = ck.id;
                request_stage(r, name, &precopy, &res.precopy_wire_bytes);
                failpoint("move:after-precopy");
        }
        /* what the remainder is sent against (what is below the pre-copy,
         * the bases of its chunks as pages) is known now: made before the
         * pause, not in it (a failure only makes it later) */
        _cleanup_(sync_upload_plan_freep) SyncUploadPlan *plan = NULL;
        if (!id_is_null(&precopy) && !o->no_remainder_with_move_in && !o->no_stream_remainder &&
            sync_upload_plan_new(s, &precopy, 1, false, &plan) < 0)
                err_clear();

        /* the final round: paused from here until the target runs it */
        uint64_t t_pause = now_ns();
        const char *owner = o->owner_url ? o->owner_url : remote_url(r);
        char hex[ID_HEX_SIZE];
        k = handoff_mark(h, name, "out", owner, o->token, epoch + 1, NULL);
        if (k < 0)
                return k;
        /* its new chunks are packed right after it: from memory (fresh.h) */
        store_keep_fresh(s, HANDOFF_FRESH_S);
        k = session_checkpoint(h, name, SESSION_CHECKPOINT_QUIT, &ck);
        if (k < 0) {
                store_keep_fresh(s, 0);
                (void) handoff_unmark(h, name);
                return k;
        }
        res.checkpoint = ck.id;
        res.final_checkpoint_ns = now_ns() - t_pause;
        res.final_ck = ck;
        id_to_hex(&ck.id, hex);
        k = handoff_mark(h, name, "out", owner, o->token, epoch + 1, hex);
        failpoint("move:after-final-checkpoint");
        /* after a pre-copy, the remainder goes with the move-in: one round
         * trip while paused; else (or when that is not taken) two */
        bool combined = k >= 0 && !id_is_null(&precopy) && !o->no_remainder_with_move_in;
        if (combined) {
                k = move_in_with_remainder(s, r, user, name, &ck.id, epoch + 1, &precopy, !o->no_stream_remainder,
                                           plan, &res);
                if (remainder_not_taken(k)) {
                        err_clear();
                        combined = false;
                        k = 0;
                }
        }
        if (!combined) {
                if (k >= 0)
                        k = push_checkpoint(h, s, r, user, name, epoch + 1, o,
                                            id_is_null(&precopy) ? NULL : &precopy, &res.final_wire_bytes,
                                            &res.final_chunks, &res.final_paged);
                failpoint("move:after-push");
                if (k >= 0)
                        k = request_move_in(r, name, &ck.id, epoch + 1, &res, &res.final_wire_bytes);
        }
        store_keep_fresh(s, 0);
        failpoint("move:after-move-in");
        if (k < 0 && (remote_error_is_transient(k) || k == -EPROTO)) {
                /* no clear answer: did the target take it? never guess */
                char saved[1024];
                snprintf(saved, sizeof saved, "%s", err_message(k));
                int owns = handoff_ask_peer(owner, o->token, name, epoch + 1);
                if (owns > 0)
                        k = 0; /* it did: go on as if it had answered */
                else if (owns < 0)
                        return err_set(k, "moving session '%s': no answer from %s (%s); the session stays "
                                       "stopped here until %s can say whether it runs there (the daemon asks "
                                       "again; checkpoint %s)",
                                       name, owner, saved, owner, hex);
                else
                        k = err_set(k, "%s", saved);
        }
        if (k < 0) {
                /* the target does not run it: take it back from our own checkpoint */
                char saved[1024];
                snprintf(saved, sizeof saved, "%s", err_message(k));
                int k2 = session_restore(h, name, hex, NULL);
                if (k2 >= 0)
                        (void) handoff_unmark(h, name);
                if (k2 < 0)
                        return err_set(k, "moving session '%s' failed (%s), and restoring it here failed too "
                                       "(%s); restore checkpoint %s by hand",
                                       name, saved, err_message(k2), hex);
                return err_set(k, "moving session '%s' failed: %s (it runs here again)", name, saved);
        }
        res.downtime_ns = now_ns() - t_pause;

        /* the target runs it: give it up for good */
        k = session_set_owner(h, name, owner, epoch + 1, epoch);
        if (k >= 0)
                (void) handoff_unmark(h, name);
        if (k < 0)
                return err_set(k, "session '%s' now runs on %s, but recording that here failed: %s "
                               "(do not start it here)",
                               name, owner, err_message(k));
        res.total_ns = now_ns() - t0;
        if (ret)
                *ret = res;
        return 0;
}

static int move_in(SessionHost *h, const char *name, const char *checkpoint_hex, int64_t epoch, int64_t from_epoch,
                   SessionRestoreResult *ret);

int session_move_in(SessionHost *h, const char *name, const char *checkpoint_hex, int64_t epoch, int64_t from_epoch,
                    SessionRestoreResult *ret) {
        handoff_busy_begin(h, name);
        int k = move_in(h, name, checkpoint_hex, epoch, from_epoch, ret);
        handoff_busy_end(h, name);
        return k;
}

static int move_in(SessionHost *h, const char *name, const char *checkpoint_hex, int64_t epoch, int64_t from_epoch,
                   SessionRestoreResult *ret) {
        SessionInfo info = { 0 };
        int k = session_get(h, name, &info);
        if (k >= 0) {
                int64_t known = info.row.epoch;
                bool local = !strcmp(info.row.owner, SESSION_OWNER_LOCAL);
                session_info_done(&info);
                if (epoch <= known || (from_epoch >= 0 && from_epoch != known))
                        return err_set(-ESTALE,
                                       "session '%s' is at epoch %lld here; a hand-over from epoch %lld is stale "
                                       "(its state is kept as checkpoint %s)",
                                       name, (long long) known, (long long) from_epoch, checkpoint_hex);
                if (local)
                        return err_set(-EBUSY, "session '%s' is owned here already", name);
                /* the marker first: owned here but not running, a crash
                 * would leave it nowhere without it (handoff_recover()
                 * restores the checkpoint it names) */
                k = handoff_mark(h, name, "in", NULL, NULL, epoch, checkpoint_hex);
                if (k >= 0)
                        k = session_set_owner(h, name, SESSION_OWNER_LOCAL, epoch, known);
                if (k < 0) {
                        (void) handoff_unmark(h, name);
                        return k;
                }
                failpoint("move-in:after-owner");
        } else if (k != -ENOENT)
                return k;
        err_clear();
        bool adopted = k == -ENOENT;
        k = session_restore(h, name, checkpoint_hex, ret);
        if (k < 0)
                return k;
        failpoint("move-in:after-restore");
        if (!adopted)
                (void) handoff_unmark(h, name);
        /* a session adopted from the checkpoint starts at the epoch it was given */
        k = session_get(h, name, &info);
        if (k < 0)
                return k;
        int64_t now_epoch = info.row.epoch;
        _cleanup_free_ char *user = strdup(info.row.user);
        session_info_done(&info);
        if (!user)
                return -ENOMEM;
        if (now_epoch != epoch) {
                k = session_set_owner(h, name, SESSION_OWNER_LOCAL, epoch, now_epoch);
                if (k < 0)
                        return k;
        }
        /* the hand-over's checkpoint is now this host's latest */
        RoamId id;
        char ref[REF_NAME_MAX_LEN + 1];
        snprintf(ref, sizeof ref, "sessions/%s/%s/latest", user, name);
        if (id_from_hex(checkpoint_hex, &id) < 0)
                return -EINVAL;
        return store_ref_set(session_host_store(h), ref, &id, NULL);
}
