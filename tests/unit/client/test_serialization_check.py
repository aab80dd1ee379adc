"""serialization.check: a state kept as bytes (a move's destination stages states) is refused
on arrival when it names anything outside the allow-list, without calling it (issue 10)."""
from __future__ import annotations

import io
import os
import pickle
import uuid
from pathlib import Path

import pytest

from dataclay.exceptions import ClassNotAllowedError, InvalidRequestError
from dataclay.serialization import check, dumps


class _Calls:
    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


def _with_pid(value, pid) -> bytes:
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=5)
    pickler.persistent_id = lambda obj: pid if obj is _MARK else None
    pickler.dump(value)
    return buffer.getvalue()


_MARK = object()


def test_allowed_states_and_references_to_model_classes_pass():
    state = {"value": 3, "children": [1.5, "x", (b"y",)], "when": uuid.uuid4()}
    check(dumps(state, lambda obj: None))
    check(_with_pid({"next": _MARK}, (uuid.uuid4().bytes, "shapes.Node", b"")))


def test_globals_outside_the_allow_list_are_refused_uncalled(tmp_path: Path):
    marker = tmp_path / "marker"
    for data in (pickle.dumps(_Calls(os.system, f"touch {marker}"), protocol=5),
                 f"cos\nsystem\n(S'touch {marker}'\ntR.".encode()):
        with pytest.raises(ClassNotAllowedError, match="system"):
            check(data)
    assert not marker.exists()


def test_references_name_only_dataclay_objects():
    with pytest.raises(ClassNotAllowedError, match="subprocess.Popen"):
        check(_with_pid({"next": _MARK}, (uuid.uuid4().bytes, "subprocess.Popen", b"")))
    with pytest.raises(InvalidRequestError, match="reference"):
        check(_with_pid({"next": _MARK}, (uuid.uuid4().bytes, 42, b"")))


def test_what_is_not_a_pickle_is_an_invalid_request_that_echoes_little():
    with pytest.raises(InvalidRequestError, match="not a valid state") as raised:
        check(b"\x80\x05" + b"x" * 100_000)
    assert len(str(raised.value)) < 400
