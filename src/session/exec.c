/* SPDX-License-Identifier: MIT */
/* The guest agent of a session: roam session exec, liveness. The protocol
 * is src/guest/agent.c's; this file finds the session's agent socket and
 * names the session in what it says. */
#include "session-internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../basic/error.h"
#include "../basic/fileio.h"
#include "../basic/macro.h"
#include "../basic/util.h"

/* The agent socket of a running session with an agent (*ret, caller
 * frees). Never waits for the session's lock: a long operation on it (a
 * log-off boot holds it for minutes) must not hold up a look at its agent. */
static int agent_socket(SessionHost *h, const char *name, char **ret) {
        SessionInfo i = {};
        int r = session_get(h, name, &i);
        if (r < 0)
                return r;
        r = check_owner(h, &i.row);
        if (r >= 0 && i.pid <= 0)
                r = err_set(-ESRCH, "session '%s' is not running (state %s; start it with 'roam session start %s')",
                            name, session_state_to_string(i.row.state), name);
        else if (r >= 0 && !i.config.agent)
                r = err_set(-EOPNOTSUPP,
                            "session '%s' has no guest agent (create the session with --agent, of an image that "
                            "runs qemu-guest-agent)",
                            name);
        if (r >= 0 && !(*ret = path_join(i.dir, "agent.sock")))
                r = -ENOMEM;
        session_info_done(&i);
        return r;
}

int session_exec(SessionHost *h, const char *name, const SessionExec *e, SessionExecResult *ret) {
        *ret = (SessionExecResult) {};
        if (!e->argv || !e->argv[0] || !*e->argv[0])
                return err_set(-EINVAL, "no command to run in session '%s'", name);
        if (e->user && !name_is_valid(e->user))
                return err_set(-EINVAL, "user name '%s' is invalid (use " NAME_RULE ")", e->user);
        _cleanup_free_ char *agent = NULL;
        int r = agent_socket(h, name, &agent);
        if (r < 0)
                return r;
        _cleanup_(qmp_freep) Qmp *q = NULL;
        r = guest_agent_open(agent, GUEST_AGENT_CONNECT_MS, &q);
        if (r < 0)
                return err_wrap(r, "session '%s'", name);
        r = guest_exec(q, e, ret);
        if (r < 0)
                return err_wrap(r, "session '%s'", name);
        return 0;
}

/* ---- liveness ---- */

static const char *const agent_states[_SESSION_AGENT_STATE_MAX] = {
        [SESSION_AGENT_NONE] = "none",
        [SESSION_AGENT_DOWN] = "down",
        [SESSION_AGENT_SILENT] = "silent",
        [SESSION_AGENT_ANSWERING] = "answering",
};

const char *session_agent_state_to_string(SessionAgentState s) {
        return (unsigned) s < _SESSION_AGENT_STATE_MAX ? agent_states[s] : NULL;
}

static void cache_put(SessionHost *h, const char *name, const SessionAgentStatus *st) {
        pthread_mutex_lock(&h->agent_lock);
        AgentSeen *slot = NULL, *oldest = &h->agents[0];
        for (size_t i = 0; i < ELEMENTSOF(h->agents); i++) {
                AgentSeen *a = &h->agents[i];
                if (a->name[0] && !strcmp(a->name, name)) {
                        slot = a;
                        break;
                }
                if (!a->name[0] && !slot)
                        slot = a;
                if (a->status.checked < oldest->status.checked)
                        oldest = a;
        }
        if (!slot)
                slot = oldest; /* full: the stalest look goes */
        snprintf(slot->name, sizeof slot->name, "%s", name);
        slot->status = *st;
        pthread_mutex_unlock(&h->agent_lock);
}

void session_agent_cached(SessionHost *h, const char *name, SessionAgentStatus *ret) {
        *ret = (SessionAgentStatus) {};
        pthread_mutex_lock(&h->agent_lock);
        for (size_t i = 0; i < ELEMENTSOF(h->agents); i++)
                if (h->agents[i].name[0] && !strcmp(h->agents[i].name, name)) {
                        *ret = h->agents[i].status;
                        break;
                }
        pthread_mutex_unlock(&h->agent_lock);
}

int session_agent_probe(SessionHost *h, const char *name, int timeout_ms, SessionAgentStatus *ret) {
        SessionAgentStatus st = { .checked = (int64_t) time(NULL) };
        _cleanup_free_ char *agent = NULL;
        int r = agent_socket(h, name, &agent);
        if (r == -EOPNOTSUPP)
                st.state = SESSION_AGENT_NONE;
        else if (r == -ESRCH || r == -EREMOTE)
                st.state = SESSION_AGENT_DOWN;
        else if (r < 0)
                return r;
        else {
                uint64_t ms = 0;
                r = guest_agent_ping(agent, timeout_ms > 0 ? timeout_ms : GUEST_AGENT_PING_MS, &ms);
                if (r >= 0) {
                        st.state = SESSION_AGENT_ANSWERING;
                        st.ping_ms = ms;
                } else {
                        st.state = SESSION_AGENT_SILENT;
                        snprintf(st.error, sizeof st.error, "%s", err_message(r));
                }
        }
        err_clear();
        cache_put(h, name, &st);
        if (ret)
                *ret = st;
        return 0;
}
