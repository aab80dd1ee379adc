"""Nothing received is executed: the restricted unpickler (dataclay.serialization's allow-list),
class paths from peers, and errors rebuilt without unpickling (issue 10)."""
from __future__ import annotations

import collections
import datetime
import decimal
import enum
import fractions
import io
import os
import pickle
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from dataclay import serialization
from dataclay.exceptions import (
    AliasAlreadyExistError,
    ClassNotAllowedError,
    ClassNotFoundError,
    DataClayException,
    InvalidRequestError,
    RemoteActiveMethodError,
    from_detail,
    to_detail,
)
from dataclay.protocol import dataclay_pb2 as pb
from dataclay.serialization import Ref, dumps, import_class, loads
from shapes import Node, PayrollError

CLIENT = Path(serialization.__file__).resolve().parents[1]


class Shade(enum.Enum):  # an Enum of a model module (this one)
    LIGHT = 1
    DARK = 2


def _no_refs(ref: Ref) -> None:
    raise AssertionError(f"no reference expected, got {ref}")


def _global_pickle(module: str, name: str, *args: object) -> bytes:
    """A protocol-0 pickle calling module.name(*args) (GLOBAL + REDUCE), as an attacker writes it."""
    arguments = "".join(f"S{arg!r}\n" if isinstance(arg, str) else f"I{arg}\n" for arg in args)
    return f"c{module}\n{name}\n({arguments}tR.".encode()


class _Calls:
    """A protocol-5 pickle calling `function(*args)` (STACK_GLOBAL + REDUCE)."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


def _attacks(marker: Path) -> list[tuple[str, bytes]]:
    command = f"touch {marker}"
    code = f"open({str(marker)!r}, 'w').close()"
    return [
        ("os.system (GLOBAL)", _global_pickle("os", "system", command)),
        ("posix.system (protocol 5)", pickle.dumps(_Calls(os.system, command), protocol=5)),
        ("subprocess.call", pickle.dumps(_Calls(subprocess.call, ["touch", str(marker)]), protocol=5)),
        ("subprocess.Popen", pickle.dumps(_Calls(subprocess.Popen, ["touch", str(marker)]), protocol=5)),
        ("builtins.eval", pickle.dumps(_Calls(eval, code), protocol=5)),
        ("builtins.exec", pickle.dumps(_Calls(exec, code), protocol=5)),
        ("builtins.getattr", _global_pickle("builtins", "getattr", "os", "system")),
        ("a model module's import", _global_pickle("shapes", "asyncio.subprocess.create_subprocess_shell", command)),
        ("nested in a value", pickle.dumps({"safe": [1, 2], "evil": _Calls(os.system, command)}, protocol=5)),
        ("pickle.loads", pickle.dumps(_Calls(pickle.loads, pickle.dumps(_Calls(os.system, command))), protocol=5)),
        ("enum's functional API", _global_pickle("enum", "Enum", "X", "A B")),
    ]


@pytest.mark.parametrize("index", range(11))
def test_a_crafted_pickle_is_refused_and_nothing_runs(tmp_path: Path, index: int):
    marker = tmp_path / "marker"
    name, data = _attacks(marker)[index]
    with pytest.raises(ClassNotAllowedError) as raised:
        loads(data, _no_refs)
    assert not marker.exists(), name
    assert isinstance(raised.value, InvalidRequestError) and isinstance(raised.value, DataClayException)
    assert "DC_PICKLE_ALLOW" in str(raised.value) and raised.value.class_path in str(raised.value)


def test_the_refusal_names_the_global():
    with pytest.raises(ClassNotAllowedError, match="posix.system") as raised:
        loads(pickle.dumps(_Calls(os.system, "true"), protocol=5), _no_refs)
    assert raised.value.class_path == "posix.system"
    with pytest.raises(ClassNotAllowedError) as raised:  # never echoes unbounded input
        loads(_global_pickle("x" * 5000, "y"), _no_refs)
    assert len(str(raised.value)) < 1000


def test_a_standard_library_module_is_never_imported_for_a_peer():
    assert "this" not in sys.modules  # `import this` prints; others do more
    with pytest.raises(ClassNotAllowedError):
        loads(_global_pickle("this", "s"), _no_refs)
    with pytest.raises((ClassNotAllowedError, ClassNotFoundError)):
        import_class("this.Whatever")
    assert "this" not in sys.modules


def test_plain_values_round_trip():
    values = [
        1, 2.5, 3 + 4j, "text", b"bytes", bytearray(b"array"), True, None, [1, [2]], (1, (2,)), {"a": {"b": 1}},
        {1, 2}, frozenset({3}), slice(1, 9, 2), range(2, 8), Ellipsis, NotImplemented,
        uuid.uuid4(), uuid.UUID(int=7, is_safe=uuid.SafeUUID.safe),
        datetime.date(2024, 2, 29), datetime.time(12, 30, tzinfo=datetime.timezone.utc),
        datetime.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=datetime.timezone(datetime.timedelta(hours=2))),
        datetime.timedelta(days=1, microseconds=5), decimal.Decimal("1.10"), fractions.Fraction(1, 3),
        collections.OrderedDict(a=1, b=2), collections.deque([1, 2], maxlen=5),
        collections.defaultdict(list, a=[1]), collections.Counter("abca"),
        ValueError("bad"), KeyError("k"), OSError(2, "No such file"),
        Shade.DARK, Node, PayrollError("over budget", 12.5),
        AliasAlreadyExistError("alias 'a' already exists", alias="a"),
    ]
    for value in values:
        back = loads(dumps(value, _no_refs), _no_refs)
        if isinstance(value, BaseException):
            assert type(back) is type(value) and back.args == value.args
        else:
            assert back == value and type(back) is type(value), value
    assert loads(dumps(values[-3:-1], _no_refs), _no_refs)[1].amount == 12.5


def test_plain_scalars_pickle_to_the_same_bytes_as_through_the_pickler():
    """dumps() skips making a Pickler for a lone None, bool, int, float or str (most results of
    calls): the bytes are what the Pickler writes, so any reader of either reads them alike."""
    for value in (None, True, False, 0, -7, 2**70, 2.5, float("inf"), "", "text", "ñ" * 300):
        buffer = io.BytesIO()
        serialization._Pickler(buffer, _no_refs).dump(value)
        assert dumps(value, _no_refs) == buffer.getvalue()
        assert loads(dumps(value, _no_refs), _no_refs) == value
    assert type(loads(dumps(True, _no_refs), _no_refs)) is bool


def test_references_still_resolve():
    ref = serialization.new_ref((uuid.uuid4().bytes, "shapes.Node", b""))
    node = object.__new__(Node)
    node.__dict__["_dc_is_registered"] = True
    data = dumps({"next": node, "plain": [1]}, lambda obj: ref)
    seen = []
    state = loads(data, lambda got: seen.append(got) or got)
    assert seen == [ref] and state["plain"] == [1]


def test_a_configured_extra_round_trips_and_only_it(tmp_path: Path):
    """DC_PICKLE_ALLOW is read by every process at start (a fresh interpreter here)."""
    script = textwrap.dedent("""
        import ipaddress, pathlib, pickle, sys
        from dataclay.exceptions import ClassNotAllowedError
        from dataclay.serialization import dumps, loads
        refs = lambda ref: None
        address = ipaddress.IPv4Address("10.0.0.1")
        assert loads(dumps(address, refs), refs) == address
        path = pathlib.PurePosixPath("/a/b")
        assert loads(dumps(path, refs), refs) == path  # pathlib.* allows what pathlib defines
        for data in (pickle.dumps(ipaddress.IPv6Address("::1")), b"cpathlib\\nos.system\\n(Strue\\ntR."):
            try:
                loads(data, refs)
            except ClassNotAllowedError as error:
                print("refused", error.class_path)
            else:
                sys.exit("not refused")
    """)
    env = dict(os.environ, DC_PICKLE_ALLOW="ipaddress.IPv4Address, pathlib.*", PYTHONPATH=str(CLIENT))
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["refused ipaddress.IPv6Address", "refused pathlib.os.system"]
    env["DC_PICKLE_ALLOW"] = "not an entry"
    done = subprocess.run([sys.executable, "-c", "import dataclay.serialization"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode != 0 and "DC_PICKLE_ALLOW" in done.stderr


def test_class_paths_resolve_only_to_dataclay_objects():
    assert import_class("shapes.Node") is Node
    for path in ("os.system", "subprocess.Popen", "builtins.eval", "shapes.PayrollError", "shapes.DataClayObject",
                 "shapes.asyncio.Event", "collections.OrderedDict"):
        with pytest.raises(ClassNotAllowedError) as raised:
            import_class(path)
        assert isinstance(raised.value, InvalidRequestError) and "DC_PICKLE_ALLOW" not in raised.value.class_path
    with pytest.raises(ClassNotFoundError, match="no_such_module.Thing"):
        import_class("no_such_module.Thing")
    with pytest.raises(ClassNotFoundError):
        import_class("../../etc/passwd")


def test_a_class_whose_module_another_thread_is_still_importing_waits_for_it(tmp_path: Path, monkeypatch):
    """A burst of requests naming a model class not imported yet: the first request's thread
    imports the module; the others must wait for that import, not find a half-initialised
    module in sys.modules and answer ClassNotFoundError."""
    import threading

    entered, go = threading.Event(), threading.Event()
    (tmp_path / "slow_model.py").write_text(textwrap.dedent("""
        import builtins
        from dataclay import DataClayObject
        builtins._dc_test_entered.set()
        builtins._dc_test_go.wait(30)

        class Slow(DataClayObject):
            pass
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    import builtins
    monkeypatch.setattr(builtins, "_dc_test_entered", entered, raising=False)
    monkeypatch.setattr(builtins, "_dc_test_go", go, raising=False)
    monkeypatch.delitem(sys.modules, "slow_model", raising=False)
    results: dict[str, object] = {}

    def resolve(name: str) -> None:
        try:
            results[name] = import_class("slow_model.Slow")
        except Exception as error:  # noqa: BLE001 - the test inspects it
            results[name] = error

    first = threading.Thread(target=resolve, args=("first",))
    first.start()
    assert entered.wait(30)
    second = threading.Thread(target=resolve, args=("second",))
    second.start()
    second.join(0.5)  # with the defect it answers at once, while the module is half initialised
    answered_early = not second.is_alive()
    go.set()
    first.join(30)
    second.join(30)
    monkeypatch.delitem(sys.modules, "slow_model", raising=False)
    assert not answered_early, f"answered before the import finished: {results.get('second')!r}"
    assert results["first"] is results["second"] and isinstance(results["first"], type)


# ------------------------------------------------------------------ errors


def _wire(detail: pb.ErrorDetail) -> pb.ErrorDetail:
    return pb.ErrorDetail.FromString(detail.SerializeToString())


def test_a_user_exception_is_rebuilt_without_unpickling():
    code, detail = to_detail(PayrollError("budget exceeded", 99.5))
    assert detail.user_class == "shapes.PayrollError"
    rebuilt = from_detail(_wire(detail))
    assert type(rebuilt) is PayrollError and rebuilt.amount == 99.5 and rebuilt.args == ("budget exceeded", 99.5)
    assert any("Raised in an active method" in note for note in rebuilt.__notes__)
    for builtin in (ValueError("bad value"), KeyError("k"), FileNotFoundError(2, "gone", "/x")):
        rebuilt = from_detail(_wire(to_detail(builtin)[1]))
        assert type(rebuilt) is type(builtin) and rebuilt.args == builtin.args
    assert from_detail(_wire(to_detail(FileNotFoundError(2, "gone", "/x"))[1])).filename == "/x"


def test_a_user_exception_holding_other_values_arrives_as_text():
    try:
        raise ValueError(object())
    except ValueError as raised:
        code, detail = to_detail(raised)
    rebuilt = from_detail(_wire(detail))
    assert type(rebuilt) is RemoteActiveMethodError and "ValueError" in str(rebuilt) and "Traceback" in str(rebuilt)
    assert rebuilt.class_path == "builtins.ValueError"


def _old_user_exception_field(value: bytes) -> bytes:
    """ErrorDetail's field 4 (reserved now: it was the pickled user exception) on the wire."""
    out = io.BytesIO()
    out.write(b"\x22")  # field 4, length-delimited
    length = len(value)
    while length >= 0x80:
        out.write(bytes([length & 0x7F | 0x80]))
        length >>= 7
    out.write(bytes([length]))
    out.write(value)
    return out.getvalue()


def test_a_rogue_servers_error_runs_nothing_in_the_client(tmp_path: Path):
    marker = tmp_path / "marker"
    evil = pickle.dumps(_Calls(os.system, f"touch {marker}"), protocol=5)
    # The old field: a client that unpickled it ran the server's code.
    raw = pb.ErrorDetail(type="RemoteActiveMethodError", message="boom").SerializeToString() + _old_user_exception_field(evil)
    assert type(from_detail(pb.ErrorDetail.FromString(raw))) is RemoteActiveMethodError
    # The new fields, crafted: a class that is no exception, an exception with crafted values,
    # a module of the standard library not imported here.
    crafted = [
        pb.ErrorDetail(type="RemoteActiveMethodError", message="m", user_class="posix.system",
                       user_arguments=dumps(((f"touch {marker}",), {}), _no_refs)),
        pb.ErrorDetail(type="RemoteActiveMethodError", message="m", user_class="subprocess.Popen",
                       user_arguments=dumps(((["touch", str(marker)],), {}), _no_refs)),
        pb.ErrorDetail(type="RemoteActiveMethodError", message="m", user_class="builtins.ValueError", user_arguments=evil),
        pb.ErrorDetail(type="RemoteActiveMethodError", message="m", user_class="builtins.ValueError",
                       user_arguments=dumps(((), {"__class__": "x"}), _no_refs)),
        pb.ErrorDetail(type="RemoteActiveMethodError", message="m", user_class="builtins.ValueError",
                       user_arguments=dumps(((), {"add_note": "x", "with_traceback": 1}), _no_refs), remote_traceback="t"),
        pb.ErrorDetail(type="RemoteActiveMethodError", message="m", user_class="this.Error",
                       user_arguments=dumps(((), {}), _no_refs)),
        pb.ErrorDetail(type="AliasAlreadyExistError", message="m", fields={"__class__": "x", "message": "y"}),
    ]
    for detail in crafted:
        rebuilt = from_detail(_wire(detail))
        assert isinstance(rebuilt, (DataClayException, ValueError)), rebuilt
        if isinstance(rebuilt, ValueError):  # methods are not state: not overwritten
            assert callable(rebuilt.add_note) and type(rebuilt) is ValueError
            assert not detail.remote_traceback or rebuilt.__notes__
    assert not marker.exists() and "this" not in sys.modules
