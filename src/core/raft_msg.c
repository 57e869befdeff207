/* Raft message and entry helpers shared by the core, the codec and the
 * simulator: names for logs and traces, and freeing what a message owns. */
#include "core/raft.h"
#include "core/raft_log.h"

void corral_raft_msg_clear(struct corral_raft_msg *m)
{
    raft_entries_free(m->entries, m->n_entries);
    corral_rbuf_unref(m->chunk);
    m->entries = NULL;
    m->n_entries = 0;
    m->chunk = NULL;
}

const char *corral_raft_role_name(enum corral_raft_role role)
{
    switch (role) {
    case CORRAL_RAFT_FOLLOWER:
        return "follower";
    case CORRAL_RAFT_PRECANDIDATE:
        return "precandidate";
    case CORRAL_RAFT_CANDIDATE:
        return "candidate";
    case CORRAL_RAFT_LEADER:
        return "leader";
    }
    return "unknown";
}

const char *corral_raft_msg_type_name(uint8_t type)
{
    static const char *const names[] = {
        [CORRAL_RAFT_MSG_PREVOTE] = "prevote",
        [CORRAL_RAFT_MSG_PREVOTE_RESP] = "prevote_resp",
        [CORRAL_RAFT_MSG_VOTE] = "vote",
        [CORRAL_RAFT_MSG_VOTE_RESP] = "vote_resp",
        [CORRAL_RAFT_MSG_APPEND] = "append",
        [CORRAL_RAFT_MSG_APPEND_RESP] = "append_resp",
        [CORRAL_RAFT_MSG_HEARTBEAT] = "heartbeat",
        [CORRAL_RAFT_MSG_HEARTBEAT_RESP] = "heartbeat_resp",
        [CORRAL_RAFT_MSG_SNAPSHOT] = "snapshot",
        [CORRAL_RAFT_MSG_SNAPSHOT_RESP] = "snapshot_resp",
        [CORRAL_RAFT_MSG_TIMEOUT_NOW] = "timeout_now",
        [CORRAL_RAFT_MSG_READ_INDEX] = "read_index",
        [CORRAL_RAFT_MSG_READ_INDEX_RESP] = "read_index_resp",
    };
    if (type == 0 || type > CORRAL_RAFT_MSG_TYPE_MAX)
        return "unknown";
    return names[type];
}
