"""Input validation of the metadata service and the errors servers send (issue 10: limits)."""
from __future__ import annotations

import uuid

import pytest

from dataclay.exceptions import InvalidRequestError, ResourceExhaustedError, from_detail
from dataclay.transport import BackendInfo
from dataclay_backend import validation
from dataclay_backend.directory import Directory, ObjectEntry
from dataclay_backend.grpc_server import error_detail


@pytest.fixture
def directory(tmp_path):
    d = Directory(tmp_path)
    yield d
    d.close()


def _refused(call, *inputs: str) -> str:
    with pytest.raises(InvalidRequestError) as info:
        call()
    message = str(info.value)
    for text in inputs:
        assert text not in message  # never echoed whole
    assert len(message) < 400
    return message


def test_aliases_with_control_characters_or_too_long_are_refused_without_echo(directory):
    backend = uuid.uuid4()
    directory.register_backend(BackendInfo(backend, "backend-0", "127.0.0.1", 1))
    object_id = uuid.uuid4()
    directory.register_objects([ObjectEntry(object_id, "shapes.Node", backend)])
    long_alias = "a" * 100_000
    _refused(lambda: directory.add_alias(long_alias, object_id), long_alias)
    _refused(lambda: directory.lookup_alias(long_alias), long_alias)
    _refused(lambda: directory.delete_alias(long_alias), long_alias)
    message = _refused(lambda: directory.add_alias("bad\x00alias\n" + "x" * 500, object_id))
    assert "\x00" not in message and "\n" not in message
    _refused(lambda: directory.register_objects([ObjectEntry(uuid.uuid4(), "shapes.Node", backend)], "\x1b[31m"))
    directory.add_alias("fine alias é", object_id)  # spaces and non-ASCII letters are fine
    assert directory.lookup_alias("fine alias é").object_id == object_id


@pytest.mark.parametrize("name, host, port", [
    ("Backend_1", "127.0.0.1", 7), ("-backend", "127.0.0.1", 7), ("b" * 300, "127.0.0.1", 7), ("", "127.0.0.1", 7),
    ("backend-1", "127.0.0.1", 0), ("backend-1", "127.0.0.1", 70000), ("backend-1", "127.0.0.1", -1),
    ("backend-1", "host name with spaces", 7), ("backend-1", "", 7), ("backend-1", "h" * 300, 7),
])
def test_backend_registrations_with_bad_fields_are_refused(directory, name, host, port):
    _refused(lambda: directory.register_backend(BackendInfo(uuid.uuid4(), name, host, port)), "b" * 300, "h" * 300)
    assert directory.backends() == []


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "[::1]", "backend-0.backends.ns.svc.cluster.local", "my-host"])
def test_valid_backend_registrations_pass(directory, host):
    directory.register_backend(BackendInfo(uuid.uuid4(), "dataclay-backend-0", host, 6867))
    assert len(directory.backends()) == 1


def test_class_paths_and_property_names_are_checked(directory):
    backend = uuid.uuid4()
    directory.register_backend(BackendInfo(backend, "backend-0", "127.0.0.1", 1))
    for bad in ("os", "a..b", "x.y; rm -rf /", "1a.B", "m." + "x" * 1000):
        _refused(lambda: directory.register_objects([ObjectEntry(uuid.uuid4(), bad, backend)]), "x" * 1000)
    assert validation.check_property("salary") == "salary"
    for bad in ("", "a-b", "__class__ ", "x" * 1000):
        _refused(lambda: validation.check_property(bad), "x" * 1000)


def test_ids_per_call_are_capped(directory, monkeypatch):
    monkeypatch.setattr(validation, "MAX_IDS_PER_CALL", 10)
    backend, other = uuid.uuid4(), uuid.uuid4()
    directory.register_backend(BackendInfo(backend, "backend-0", "127.0.0.1", 1))
    directory.register_backend(BackendInfo(other, "backend-1", "127.0.0.1", 2))
    many = [ObjectEntry(uuid.uuid4(), "shapes.Node", backend) for _ in range(11)]
    with pytest.raises(ResourceExhaustedError):
        directory.register_objects(many)
    directory.register_objects(many[:10])
    with pytest.raises(ResourceExhaustedError):
        directory.commit_move([e.object_id.bytes for e in many], backend, other)
    with pytest.raises(ResourceExhaustedError):
        directory.drop_objects([e.object_id for e in many])
    assert len(directory.owned_by(backend)) == 10


def test_the_default_cap_keeps_large_moves_in_one_commit():
    assert validation.DEFAULT_MAX_IDS_PER_CALL >= 1_000_000


class _Aborted(Exception):
    pass


class _Context:
    """What a servicer's handler uses of a grpc.ServicerContext."""

    def set_trailing_metadata(self, metadata):
        self.metadata = dict(metadata)

    def abort(self, code, details):
        self.code, self.details = code, details
        raise _Aborted


def test_an_internal_error_sends_no_traceback_or_path(tmp_path):
    from dataclay.protocol import ERROR_METADATA_KEY
    from dataclay.protocol import dataclay_pb2 as pb
    from dataclay_backend.grpc_server import handler

    broken = Directory(tmp_path / "secret-data-dir")
    broken.close()  # a defect: every query now raises sqlite3.ProgrammingError inside the service
    context = _Context()
    with pytest.raises(_Aborted):
        handler(Directory.locate)(broken, uuid.uuid4(), context)
    raw = context.metadata[ERROR_METADATA_KEY]
    detail = pb.ErrorDetail.FromString(raw)
    assert context.code.name == "INTERNAL" and detail.type == "DataClayException"
    assert not detail.remote_traceback and not detail.user_class
    for leak in (b"Traceback", b".py", b"secret-data-dir", str(tmp_path).encode(), b"ProgrammingError"):
        assert leak not in raw and leak.decode() not in context.details
    rebuilt = from_detail(detail)
    assert "error id" in str(rebuilt) and rebuilt.fields["error_id"] in str(rebuilt)


def test_a_user_exception_from_an_active_method_keeps_its_traceback():
    import shapes

    try:
        shapes.Node.fail._dc_activemethod(None, 3.0)  # the method's own code, in a model module
    except shapes.PayrollError as exc:
        code, detail = error_detail(exc, "CallActiveMethod")
    assert detail.remote_traceback and "shapes.py" in detail.remote_traceback
    assert detail.user_class == "shapes.PayrollError"


def test_error_messages_and_fields_are_bounded():
    from dataclay.exceptions import AliasDoesNotExistError

    code, detail = error_detail(AliasDoesNotExistError("x" * 100_000, alias="y" * 100_000), "LookupAlias")
    assert len(detail.message) < 1100 and all(len(value) < 300 for value in detail.fields.values())


def test_property_and_method_names_are_checked_in_one_place():
    from dataclay.exceptions import ActiveMethodNotFoundError, AttributeNotFoundError
    from shapes import Node

    assert validation.property_of(Node, "value") == "value"
    for name in ("p" * 100_000, "__class__", "__dict__", "_dc_id", "not a name", "", "a\x00b", "bump"):
        message = _refused(lambda: validation.property_of(Node, name), name if len(name) > 100 else "\x00")
        assert "p" * 150 not in message
    with pytest.raises(AttributeNotFoundError):
        validation.property_of(Node, "missing")
    assert validation.check_method(Node, "bump") is Node.bump
    _refused(lambda: validation.check_method(Node, "m" * 100_000), "m" * 150)
    with pytest.raises(ActiveMethodNotFoundError):
        validation.check_method(Node, "__class__")


def test_limits_are_flags_that_beat_their_environment_variables(monkeypatch):
    """--max-concurrent-rpcs / --max-streams / --max-connection-idle set a server's limits; each
    environment variable is the fallback, then the default; a non-positive value is a one-line
    argument error."""
    import pytest as _pytest

    from dataclay_backend.config import base_parser, server_limits
    from dataclay_backend.server_limits import DEFAULT_MAX_CONCURRENT_RPCS

    monkeypatch.setenv("DC_MAX_STREAMS", "7")
    monkeypatch.setenv("DC_MAX_CONNECTION_IDLE", "2.5")
    monkeypatch.delenv("DC_MAX_CONCURRENT_RPCS", raising=False)
    limits = server_limits(base_parser("t").parse_args(["--max-concurrent-rpcs", "9", "--max-streams", "3"]))
    options = dict(limits.options())
    assert limits.max_concurrent_rpcs == 9 and limits.pool._max_workers == 9
    assert options["grpc.max_concurrent_streams"] == 3  # the flag, not DC_MAX_STREAMS
    assert options["grpc.max_connection_idle_ms"] == 2500  # the environment variable
    assert server_limits(base_parser("t").parse_args([])).max_concurrent_rpcs == DEFAULT_MAX_CONCURRENT_RPCS
    help_text = base_parser("t").format_help()
    assert all(flag in help_text for flag in ("--max-concurrent-rpcs", "--max-streams", "--max-connection-idle"))
    for bad in ("0", "-1", "many"):
        with _pytest.raises(SystemExit):
            base_parser("t").parse_args(["--max-streams", bad])


def test_the_data_pool_counts_each_call_until_it_ends_even_if_it_fails():
    """The admission bound reads this count (server_limits.Admission): a call is counted from its
    submission until it has run, whether it returned or raised."""
    import threading

    from dataclay_backend.server_limits import CountingPool

    pool = CountingPool(4)
    try:
        started, release = threading.Event(), threading.Event()

        def held() -> str:
            started.set()
            release.wait()
            return "done"

        def failing() -> None:
            raise ValueError("boom")

        running = pool.submit(held)
        started.wait()
        assert pool.active == 1
        failed = pool.submit(failing)
        with pytest.raises(ValueError):
            failed.result()
        assert pool.active == 1  # the failed call is counted out; the held one still in
        release.set()
        assert running.result() == "done"
        pool.shutdown(wait=True)
        assert pool.active == 0
    finally:
        pool.shutdown(wait=False)
