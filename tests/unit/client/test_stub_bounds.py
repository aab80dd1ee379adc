"""Stub classes are made from class paths a peer names (references in replies): bounded in length
and in number, so a rogue server cannot grow a client's memory without end."""
import pytest

from dataclay import stub
from dataclay.exceptions import InvalidRequestError, ResourceExhaustedError


def test_a_stub_class_path_is_bounded_and_well_formed():
    assert stub.stub_class("pkg.mod.Thing") is stub.StubDataClayObject["pkg.mod.Thing"]
    for bad in ("a" * 300 + "." + "b" * 300, "no_module", "pkg.mod.not-an-identifier", "pkg..Thing"):
        with pytest.raises(InvalidRequestError):
            stub.stub_class(bad)


def test_no_more_stub_classes_than_the_bound(monkeypatch):
    monkeypatch.setattr(stub, "_STUBS", {}, raising=True)
    monkeypatch.setattr(stub, "MAX_STUB_CLASSES", 3)
    made = [stub.stub_class(f"pkg.mod.C{i}") for i in range(3)]
    assert stub.stub_class("pkg.mod.C0") is made[0]  # known ones are still answered
    with pytest.raises(ResourceExhaustedError, match="model on the client's path"):
        stub.stub_class("pkg.mod.C3")
