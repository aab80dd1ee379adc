"""The wire contract. Messages and services are generated from dataclay.proto (read that file
for the conventions); import them as `from dataclay.protocol import dataclay_pb2 as pb`."""

ERROR_METADATA_KEY = "dataclay-error-bin"
CHAIN_METADATA_KEY = "dataclay-chain"
OBJECT_ID_METADATA_KEY = "dataclay-object-id-bin"  # SetRawAttribute, StoreRawObject: the object
PROPERTY_METADATA_KEY = "dataclay-property-bin"  # SetRawAttribute, StoreRawObject: the property, UTF-8
CLASS_METADATA_KEY = "dataclay-class-bin"  # StoreRawObject: the class path, UTF-8
ALIAS_METADATA_KEY = "dataclay-alias-bin"  # StoreRawObject: the alias (empty: none), UTF-8
STATE_METADATA_KEY = "dataclay-state-bin"  # StoreRawObject: the other properties, pickled
RAW_METADATA_KEY = "dataclay-raw"  # GetAttribute: the reply is the value's bytes

# The largest message a server or client sends or accepts, in bytes: DC_MAX_MESSAGE (a number, or
# with a unit as Kubernetes writes sizes: 512Mi, 1Gi). The default, 1.25 GiB, keeps a 1 GiB `bytes`
# attribute one message (a raw value is the whole message; its object's state with it, or a move's
# batch around it, needs a little more), and stays below gRPC's hard ceiling (2 GiB - 1). Past it the
# call fails with RESOURCE_EXHAUSTED (dataclay.exceptions.ResourceExhaustedError) and the server
# goes on serving. Set it alike on servers and clients.
DEFAULT_MAX_MESSAGE = 1280 * 2**20
GRPC_MAX_MESSAGE = 2**31 - 1
_SIZE_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "ki": 2**10, "mi": 2**20, "gi": 2**30}


def parse_size(text: str) -> int:
    """'512Mi', '1Gi', '1000000' -> bytes."""
    text = text.strip()
    number = text.rstrip("KMGkmgi")
    unit = text[len(number):].lower()
    if unit not in _SIZE_UNITS or not number:
        raise ValueError(f"not a size: {text[:40]!r} (use e.g. 512Mi, 1Gi, 1000000)")
    return int(float(number) * _SIZE_UNITS[unit])


def max_message(environ=None) -> int:
    """This process's message limit (DC_MAX_MESSAGE), between 1 KiB and gRPC's 2 GiB - 1."""
    import os

    text = (os.environ if environ is None else environ).get("DC_MAX_MESSAGE", "")
    size = parse_size(text) if text.strip() else DEFAULT_MAX_MESSAGE
    return max(1024, min(size, GRPC_MAX_MESSAGE))


MAX_MESSAGE = max_message()
MESSAGE_LIMITS = [
    ("grpc.max_send_message_length", MAX_MESSAGE),
    ("grpc.max_receive_message_length", MAX_MESSAGE),
]
# Calls in flight on one connection: servers admit at most DC_MAX_STREAMS streams per connection
# (default 128) and refuse the excess of a burst (HTTP/2 REFUSED_STREAM, which gRPC reports as
# UNAVAILABLE, an outcome the caller cannot tell); so callers keep at most half as many in flight
# per channel (dataclay.transport) and the rest wait on their side. Set it alike on servers and
# clients.
DEFAULT_MAX_STREAMS = 128


def max_streams(environ=None) -> int:
    """This process's per-connection stream count (DC_MAX_STREAMS), at least 1."""
    import os

    text = (os.environ if environ is None else environ).get("DC_MAX_STREAMS", "").strip()
    try:
        return max(1, int(float(text))) if text else DEFAULT_MAX_STREAMS
    except ValueError:
        raise ValueError(f"DC_MAX_STREAMS must be a number, got {text[:40]!r}") from None


# How many object ids (16 bytes, 18 with their framing) one message holds, with room for the rest
# of the message: the size of ListOwnedObjects pages and of the parts a long list of ids is sent in.
IDS_PER_MESSAGE = max(1, (MAX_MESSAGE - 256) // 18)
UNLIMITED_MESSAGES = MESSAGE_LIMITS  # the former name (messages were unbounded), kept for its importers

# Reconnect at once after a restart: gRPC's default backoff (1 s, x1.6 per failed attempt, up to
# 120 s) leaves a server that was down for a few seconds unreachable for several more. With these
# a channel tries again after 0.1 s, and never waits more than 1 s between attempts, so a server
# restarted on the same address is reached within about a second (tests/integration/test_deadlines.py).
FAST_RECONNECT = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]
# The options of every channel this project opens (clients, and servers calling each other).
CHANNEL_OPTIONS = [*MESSAGE_LIMITS, *FAST_RECONNECT]

# RPCs that may be sent again when their outcome is unknown (the connection broke, or no reply
# within the deadline): doing them twice leaves the same state as doing them once. The table,
# with the reasons, is beside each rpc in dataclay.proto; a test checks that they agree.
IDEMPOTENT = frozenset({
    # Backend
    "GetAttribute", "SetAttribute", "SetRawAttribute", "GetObjectState", "UpdateObject", "Stats", "GetClassInfo",
    "ActivateMove", "AbortMove", "StoreReplicas", "ReadReplica", "ForgetReplicas", "FlushRegistrations",
    # Metadata
    "RegisterBackend", "ListBackends", "RegisterObjects", "LocateObject", "LookupAlias", "GetAliases", "ListOwnedObjects",
    "SetDraining", "DeregisterBackend", "DropObjects", "CommitMove", "ResolveTransaction", "LastBackup",
    "ReconcileObjects", "AddReplicas", "DropReplicas", "ListReplicas",
})
