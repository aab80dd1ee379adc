"""Bad input gets a clear, typed error, and nothing already stored is lost."""
import uuid

import grpc
import pytest

from dataclay.exceptions import (
    ActiveMethodNotFoundError,
    AttributeNotFoundError,
    BackendNotFoundError,
    BackendUnavailableError,
    ClassNotFoundError,
    DataClayException,
    InvalidRequestError,
    ObjectNotRegisteredError,
    from_detail,
)
from dataclay.protocol import ERROR_METADATA_KEY, UNLIMITED_MESSAGES
from dataclay.protocol import dataclay_pb2 as pb
from dataclay.protocol import dataclay_pb2_grpc as rpc
from dataclay.security import client_credentials, open_channel
from hr import Employee
from secret_model import Unknown
from shapes import Node, PayrollError


@pytest.fixture
def witness(client):
    """An object stored before the bad input; it must survive unchanged."""
    employee = Employee("Witness", 123.0)
    employee.make_persistent(alias=f"witness-{uuid.uuid4()}")
    yield employee
    assert employee.salary == 123.0 and employee.name == "Witness"


def test_user_exception_arrives_as_itself(client, witness):
    node = Node(1)
    node.make_persistent()
    with pytest.raises(PayrollError) as raised:
        node.fail(99.5)
    assert raised.value.amount == 99.5
    assert any("Raised in an active method" in note for note in raised.value.__notes__)
    with pytest.raises(ValueError, match="bad value inside active method"):
        node.fail_builtin()
    assert node.value == 1


def test_unknown_backend(client, witness):
    with pytest.raises(BackendNotFoundError, match="no backend"):
        Employee("X", 1.0).make_persistent(backend_id=uuid.uuid4())
    with pytest.raises(InvalidRequestError, match="not a UUID"):
        Employee("X", 1.0).make_persistent(backend_id="not-a-uuid")


def test_unregistered_object(client, witness):
    loose = Employee("Loose", 1.0)
    with pytest.raises(ObjectNotRegisteredError):
        loose.add_alias("loose")
    with pytest.raises(ObjectNotRegisteredError):
        loose.get_aliases()
    assert loose.raise_salary(1.0) == 2.0  # still a plain local object


def test_unknown_class_on_backend(client, witness):
    obj = Unknown()
    obj.value = 1
    with pytest.raises(ClassNotFoundError, match="secret_model.Unknown"):
        obj.make_persistent()
    assert not obj._dc_is_registered and obj.value == 1


def test_unknown_method_and_property(client, witness):
    node = Node(1)
    node.make_persistent()
    backend = client.get_backends()[node._dc_backend_id]
    channel = open_channel(backend.address, client_credentials(identity="backend:backend-0"), options=UNLIMITED_MESSAGES)
    stub = rpc.BackendStub(channel)
    oid = node._dc_id.bytes
    with pytest.raises(grpc.RpcError) as raised:
        stub.CallActiveMethod(pb.CallRequest(object_id=oid, method="__class__", payload=b""))
    assert isinstance(_error(raised.value), ActiveMethodNotFoundError)
    with pytest.raises(grpc.RpcError) as raised:
        stub.GetAttribute(pb.GetAttributeRequest(object_id=oid, name="_dc_lock"))
    assert isinstance(_error(raised.value), InvalidRequestError)  # a private name is refused, not looked up
    channel.close()


def test_an_active_method_called_with_wrong_arguments_is_a_typed_error_naming_them(client, witness):
    """As a local call's TypeError would, the error says what is wrong with the arguments; not an
    internal error of the server (a caller's mistake, common through stubs, which have no signature)."""
    employee = Employee("Args", 1.0)
    employee.make_persistent()
    with pytest.raises(InvalidRequestError, match="amount") as raised:
        employee.raise_salary()
    assert "internal error" not in str(raised.value) and "raise_salary" in str(raised.value)
    with pytest.raises(InvalidRequestError, match="unexpected"):
        employee.raise_salary(1.0, bonus=2.0)
    assert employee.salary == 1.0  # nothing ran


def _error(error: grpc.RpcError) -> BaseException:
    for key, value in error.trailing_metadata():
        if key == ERROR_METADATA_KEY:
            return from_detail(pb.ErrorDetail.FromString(value))
    raise AssertionError(f"no error detail in {error}")


def test_malformed_requests(client, witness):
    backend = client.get_backends()[witness._dc_backend_id]
    channel = open_channel(backend.address, client_credentials(identity="backend:backend-0"), options=UNLIMITED_MESSAGES)
    stub = rpc.BackendStub(channel)
    cases = [
        lambda: stub.GetAttribute(pb.GetAttributeRequest(object_id=b"short", name="x")),
        lambda: stub.CallActiveMethod(pb.CallRequest(object_id=witness._dc_id.bytes, method="raise_salary", payload=b"garbage")),
        lambda: stub.StoreObjects(pb.StoreObjectsRequest()),
        lambda: stub.StoreObjects(pb.StoreObjectsRequest(objects=[pb.ObjectRecord(object_id=uuid.uuid4().bytes, class_path="hr.Employee", state=b"\x80\x05junk")])),
    ]
    for case in cases:
        with pytest.raises(grpc.RpcError) as raised:
            case()
        assert raised.value.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION)
        assert isinstance(_error(raised.value), (InvalidRequestError, ObjectNotRegisteredError))
    # A wrong-typed message body on the raw channel: rejected by gRPC, server unharmed.
    raw = channel.unary_unary("/dataclay.v1.Backend/GetAttribute")
    with pytest.raises(grpc.RpcError):
        raw(b"\xff\xff\xff")
    # A raw value that names no object, a short id, or a property the class does not have.
    set_raw = channel.unary_unary("/dataclay.v1.Backend/SetRawAttribute")
    for metadata, expected in [
        ((), InvalidRequestError),
        ((("dataclay-object-id-bin", b"short"), ("dataclay-property-bin", b"salary")), InvalidRequestError),
        ((("dataclay-object-id-bin", witness._dc_id.bytes), ("dataclay-property-bin", b"nope")), AttributeNotFoundError),
    ]:
        with pytest.raises(grpc.RpcError) as raised:
            set_raw(b"value", metadata=metadata)
        assert isinstance(_error(raised.value), expected)
    channel.close()


def test_backend_that_is_down_is_named(make_cluster):
    from dataclay import Client

    cluster = make_cluster(backends=2)
    with Client(host="127.0.0.1", port=cluster.port) as client:
        ids = list(client.get_backends())
        survivor = Employee("Survivor", 5.0)
        survivor.make_persistent(backend_id=ids[0])
        victim = Employee("Victim", 6.0)
        victim.make_persistent(backend_id=ids[1])
        cluster.kill_backend("backend-1")
        with pytest.raises(BackendUnavailableError, match="backend-1"):
            victim.salary
        assert survivor.salary == 5.0
        cluster.start_backend(1)
        assert victim.salary == 6.0  # nothing lost; the new address is picked up


def test_error_classes_round_trip_through_the_wire_encoding():
    from dataclay.exceptions import AliasAlreadyExistError, to_detail

    original = AliasAlreadyExistError("alias 'a' already exists", alias="a")
    code, detail = to_detail(original)
    assert code == grpc.StatusCode.ALREADY_EXISTS
    rebuilt = from_detail(pb.ErrorDetail.FromString(detail.SerializeToString()))
    assert type(rebuilt) is AliasAlreadyExistError and rebuilt.alias == "a"
    unknown = from_detail(pb.ErrorDetail(type="NotInTheAllowList", message="m"))
    assert type(unknown) is DataClayException


def test_an_empty_payload_is_a_call_without_arguments(client):
    """The wire contract (dataclay.proto, CallRequest): clients send no pickle for a call without
    arguments; the method runs, and its result comes back as for any call."""
    import pickle

    node = Node(1)
    node.make_persistent()
    backend = client.get_backends()[node._dc_backend_id]
    with open_channel(backend.address, client_credentials(), options=UNLIMITED_MESSAGES) as channel:
        stub = rpc.BackendStub(channel)
        reply = stub.CallActiveMethod(pb.CallRequest(object_id=node._dc_id.bytes, method="bump", payload=b""))
        assert pickle.loads(reply.payload) == 2
        with pytest.raises(grpc.RpcError) as raised:  # a method that needs arguments says so, typed
            stub.CallActiveMethod(pb.CallRequest(object_id=node._dc_id.bytes, method="bump_and_replicate", payload=b""))
        assert isinstance(_error(raised.value), InvalidRequestError) and "backend_id" in str(_error(raised.value))
    assert node.bump() == 3


def test_malformed_call_arguments_and_states(client):
    node = Node(1)
    node.make_persistent()
    backend = client.get_backends()[node._dc_backend_id]
    with open_channel(backend.address, client_credentials(identity="backend:backend-0"), options=UNLIMITED_MESSAGES) as channel:
        stub = rpc.BackendStub(channel)
        import pickle

        with pytest.raises(grpc.RpcError) as raised:
            stub.CallActiveMethod(pb.CallRequest(object_id=node._dc_id.bytes, method="bump", payload=pickle.dumps(7)))
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        sneaky = pickle.dumps({"value": 1, "_dc_lock": None})
        with pytest.raises(grpc.RpcError) as raised:
            stub.StoreObjects(pb.StoreObjectsRequest(objects=[
                pb.ObjectRecord(object_id=uuid.uuid4().bytes, class_path="shapes.Node", state=sneaky)]))
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert node.bump() == 2
