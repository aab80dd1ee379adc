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
