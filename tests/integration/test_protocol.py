"""The generated gRPC code matches dataclay.proto."""
from pathlib import Path

from dataclay.protocol.generate import SOURCE_ROOT, generate
from dataclay.security import client_credentials, open_channel
from shapes import Blob


def test_generated_code_is_fresh(tmp_path: Path):
    for fresh in generate(tmp_path):
        committed = SOURCE_ROOT / fresh.relative_to(tmp_path)
        assert committed.read_text() == fresh.read_text(), (
            f"{committed} is stale: run `python -m dataclay.protocol.generate`"
        )


def test_a_bytes_value_is_the_whole_message_both_ways(client):
    """The wire contract of dataclay.proto for raw values, spoken by a plain gRPC client."""
    import grpc

    from dataclay.protocol import UNLIMITED_MESSAGES
    from dataclay.protocol import dataclay_pb2 as pb

    blob = Blob(b"")
    blob.make_persistent()
    backend = client.get_backends()[blob._dc_backend_id]
    with open_channel(backend.address, client_credentials(identity="backend:backend-0"), options=UNLIMITED_MESSAGES) as channel:
        set_raw = channel.unary_unary("/dataclay.v1.Backend/SetRawAttribute")
        get = channel.unary_unary("/dataclay.v1.Backend/GetAttribute")
        value = bytes(range(256)) * 1000
        set_raw(value, metadata=(("dataclay-object-id-bin", blob._dc_id.bytes), ("dataclay-property-bin", "data".encode())))
        request = pb.GetAttributeRequest(object_id=blob._dc_id.bytes, name="data").SerializeToString()
        reply, call = get.with_call(request)
        assert reply == value and ("dataclay-raw", "1") in call.trailing_metadata()
        blob.data = [1, 2]  # not bytes: a pickled Payload, unflagged
        reply, call = get.with_call(request)
        assert pb.Payload.FromString(reply).payload and "dataclay-raw" not in dict(call.trailing_metadata() or ())
    assert blob.data == [1, 2]
