"""The wire contract. Messages and services are generated from dataclay.proto (read that file
for the conventions); import them as `from dataclay.protocol import dataclay_pb2 as pb`."""

ERROR_METADATA_KEY = "dataclay-error-bin"
CHAIN_METADATA_KEY = "dataclay-chain"
OBJECT_ID_METADATA_KEY = "dataclay-object-id-bin"  # SetRawAttribute: the object
PROPERTY_METADATA_KEY = "dataclay-property-bin"  # SetRawAttribute: the property, UTF-8
RAW_METADATA_KEY = "dataclay-raw"  # GetAttribute: the reply is the value's bytes

# Messages of any size: a 1 GiB attribute is one message (protobuf's own ceiling is 2 GiB).
UNLIMITED_MESSAGES = [
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", -1),
]

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
CHANNEL_OPTIONS = [*UNLIMITED_MESSAGES, *FAST_RECONNECT]

# RPCs that may be sent again when their outcome is unknown (the connection broke, or no reply
# within the deadline): doing them twice leaves the same state as doing them once. The table,
# with the reasons, is beside each rpc in dataclay.proto; a test checks that they agree.
IDEMPOTENT = frozenset({
    # Backend
    "GetAttribute", "SetAttribute", "SetRawAttribute", "GetObjectState", "UpdateObject", "Stats",
    "ActivateMove", "AbortMove",
    # Metadata
    "RegisterBackend", "ListBackends", "LocateObject", "LookupAlias", "GetAliases", "ListOwnedObjects",
    "SetDraining", "DropObjects", "CommitMove", "ResolveTransaction",
})
