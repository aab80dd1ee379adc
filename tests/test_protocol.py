"""The generated gRPC code matches dataclay.proto."""
from pathlib import Path

from dataclay.protocol.generate import SOURCE_ROOT, generate


def test_generated_code_is_fresh(tmp_path: Path):
    for fresh in generate(tmp_path):
        committed = SOURCE_ROOT / fresh.relative_to(tmp_path)
        assert committed.read_text() == fresh.read_text(), (
            f"{committed} is stale: run `python -m dataclay.protocol.generate`"
        )


def test_large_value_codec_is_wire_identical_to_the_proto():
    import os

    from dataclay.protocol import codec
    from dataclay.protocol import dataclay_pb2 as pb

    for value in (b"", b"x", os.urandom(300), os.urandom(70_000)):
        encoded = codec.encode_payload(value)
        assert encoded == pb.Payload(raw=value).SerializeToString()
        assert codec.decode_payload(encoded) == value
        request = codec.RawSet(os.urandom(16), "data", value)
        encoded = codec.encode_set_attribute(request)
        assert encoded == pb.SetAttributeRequest(object_id=request.object_id, name="data", raw=value).SerializeToString()
        decoded = codec.decode_set_attribute(encoded)
        assert (decoded.object_id, decoded.name, decoded.raw) == (request.object_id, "data", value)
    pickled = pb.Payload(payload=b"abc").SerializeToString()
    assert codec.decode_payload(pickled) == pb.Payload(payload=b"abc")
    other = pb.SetAttributeRequest(object_id=b"1" * 16, name="x", payload=b"p")
    assert codec.decode_set_attribute(other.SerializeToString()) == other
