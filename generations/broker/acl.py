"""Redis ACL users: one per enrolled GPU host, allowed exactly what RQ's worker and our protocol
need, and the rules of the web app's and the conductor's own users.

A host's user may, on the fleet's queues and RQ's registries, what an RQ worker does (found by
running one under this ACL and reading what Redis refused: docs/deploy.md lists it); write its own
heartbeats, its own workers set and append to its own events stream; read cancel keys and the
cancel channel. Nothing else: no channel-layer keys, no leader lock, no previews or autoscaling
keys, no other host's stream or heartbeat, and none of FLUSH*, CONFIG, KEYS, SCRIPT, DEBUG, MONITOR,
EVAL. Each group of keys is a selector with its own commands, so (for instance) a queue can be
popped but not deleted. Hosts' users authenticate with a SHA-256 of their secret (``#<hex>``): the
database keeps only that, and the conductor re-applies them when Redis restarts empty.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import redis

from gpu_worker import protocol

# Connection housekeeping for every user: HELLO, AUTH, CLIENT SETNAME/SETINFO/ID... (not KILL, LIST).
_CONNECTION = ["+@connection", "-@dangerous", "-select", "+info", "+multi", "+exec", "+discard", "+unwatch"]

# protocol.cancel_key(generation, attempt) lies under this; read-only for hosts.
CANCEL_KEYS = "workshop:cancel:*"
_LIST_COMMANDS = "+blmove +lmove +blpop +lpop +lrange +lrem +rpush +lpush +llen +lpos +lindex"
_STATE_COMMANDS = (
    "+exists +expire +pexpire +persist +del +unlink +ttl +type +watch +get +set"
    " +hset +hsetnx +hget +hmget +hgetall +hdel +hexists +hlen +hincrby +hincrbyfloat"
    " +sadd +srem +smembers +sismember +scard"
    " +zadd +zrem +zrange +zrangebyscore +zrevrangebyscore +zremrangebyscore +zscore +zcard +zcount"
    " +xadd +xrange +xrevrange +xlen"
)
_RQ_SHARED_KEYS = (
    "rq:job:*",
    "rq:results:*",
    "rq:execution:*",
    "rq:executions:*",
    "rq:queues",
    "rq:workers",
    "rq:suspended",
    "rq:groups",
    "rq:rl-keys",
    "rq:clean_groups",
)
_RQ_QUEUE_REGISTRIES = (
    "rq:wip:{q}",
    "rq:finished:{q}",
    "rq:failed:{q}",
    "rq:deferred:{q}",
    "rq:scheduled:{q}",
    "rq:canceled:{q}",
    "rq:ready:{q}",
    "rq:workers:{q}",
    "rq:clean_registries:{q}",
)


def _selector(keys: Iterable[str], commands: str) -> str:
    # A pattern may say its own access ("%R~..." read-only); a bare one is read and write.
    return "(" + " ".join([*(k if k.startswith("%") else f"~{k}" for k in keys), commands]) + ")"


def host_rules(
    username: str, *, queues: Sequence[str], events_base: str = protocol.EVENTS_STREAM
) -> list[str]:
    """The ACL of a GPU host's user, less its password and its on/off state."""
    queues = [*queues, protocol.accept_queue(username)]  # its own, for `gpu-worker accept`
    rq_keys = [
        *_RQ_SHARED_KEYS,
        *(pattern.format(q=q) for q in queues for pattern in _RQ_QUEUE_REGISTRIES),
        # RQ names the worker process "<worker name>.<pid>"; the worker name lies in the namespace.
        f"rq:worker:{username}.*",
        f"rq:worker:{username}:*",
        # RQ's maintenance checks which registered workers still exist (and drops the others).
        "%R~rq:worker:*",
    ]
    heartbeat_keys = [
        protocol.worker_key(username),
        protocol.worker_key(username + ":*"),
        protocol.host_workers_set(username),
    ]
    return [
        *_CONNECTION,
        "+subscribe",
        "+unsubscribe",
        f"&rq:pubsub:{username}.*",
        f"&rq:pubsub:{username}:*",
        f"&{protocol.CANCEL_CHANNEL}",
        _selector(
            [k for q in queues for k in (f"rq:queue:{q}", f"rq:queue:{q}:intermediate")], _LIST_COMMANDS
        ),
        _selector(rq_keys, _STATE_COMMANDS),
        _selector(heartbeat_keys, "+hset +expire +del +sadd +srem +exists"),
        _selector([protocol.host_events_stream(username, events_base)], "+xadd"),
        f"(%R~{CANCEL_KEYS} +get +exists)",
    ]


# The web app and the conductor: everything but the dangerous commands, plus what enrolling,
# revoking and re-applying hosts takes. Used where we start Redis ourselves (manage.py up, the tests)
# and in deploy/redis/users.acl.
APP_RULES = [
    "~*",
    "&*",
    "+@all",
    "-@dangerous",
    "+info",
    "+acl|setuser",
    "+acl|deluser",
    "+acl|getuser",
    "+acl|users",
    "+client|kill",
]


def app_user(conn: redis.Redis, username: str, password: str) -> None:
    conn.execute_command("ACL", "SETUSER", username, "reset", "on", f">{password}", *APP_RULES)


def host_apply(
    conn: redis.Redis, *, username: str, secret_sha256: str, queues: Sequence[str], events_base: str
) -> None:
    """Create or replace a host's user (its connections keep working if the rules are unchanged)."""
    rules = host_rules(username, queues=queues, events_base=events_base)
    conn.execute_command("ACL", "SETUSER", username, "reset", "on", f"#{secret_sha256}", *rules)


def host_drop(conn: redis.Redis, username: str) -> None:
    """Delete a host's user and close its connections at once (Redis disconnects a deleted user's
    clients; CLIENT KILL is for the ones a reconnect raced in)."""
    conn.execute_command("ACL", "DELUSER", username)
    try:
        conn.execute_command("CLIENT", "KILL", "USER", username)
    except redis.ResponseError:
        pass  # no such user any more, or no client left


def users(conn: redis.Redis) -> set[str]:
    return {u.decode() if isinstance(u, bytes) else str(u) for u in conn.execute_command("ACL", "USERS")}
