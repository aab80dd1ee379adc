"""Edges of objects created inside active methods, by-value copies a hostile peer sends,
coalesced stores, get_properties and StoreRawObject: each found in review as a defect, kept
as the test that failed while it was there. Real processes, real gRPC on loopback, no mocks."""
from __future__ import annotations

import asyncio
import copyreg
import io
import os
import pickle
import signal
import threading
import time
import uuid

import pytest

from dataclay import Client
from dataclay import operations as ops
from dataclay.exceptions import DataClayException
from dataclay.protocol import dataclay_pb2 as pb
from dataclay.serialization import make_ref
from dataclay.transport import run_blocking
from makers import Decoy, FailingInit, Maker
from shapes import Node


# ---------------------------------------------------------------- helpers: a hostile client
def _hostile_payload(value, forged: dict[int, dict]) -> bytes:
    """Pickle `value` as a hostile client can: persistent objects as references (as dumps
    does), but the plain DataClayObjects whose id() is in `forged` by value (NEWOBJ + BUILD)
    with the given state, which may name the lifecycle's own keys (_dc_id, ...)."""
    buffer = io.BytesIO()

    class Hostile(pickle.Pickler):
        def persistent_id(self, obj):
            if getattr(obj, "_dc_is_dataclay_object", False) and not isinstance(obj, type) and obj.is_persistent:
                return make_ref(obj)[:]
            return None

        def reducer_override(self, obj):
            if id(obj) in forged:
                return copyreg.__newobj__, (type(obj),), forged[id(obj)]
            return NotImplemented

    Hostile(buffer, protocol=5).dump(value)
    return buffer.getvalue()


def _call_raw(client: Client, target, method: str, payload: bytes):
    rt = client.runtime
    info = client.get_backends()[target._dc_backend_id]
    request = pb.CallRequest(object_id=target.id.bytes, method=method, payload=payload)
    return run_blocking(rt.blocking.backend(info, "CallActiveMethod", request))


def _owned_objects(client: Client, backend_id) -> int:
    rt = client.runtime
    info = client.get_backends()[backend_id]
    return run_blocking(rt.blocking.backend(info, "Stats", pb.Empty())).owned_objects


# ---------------------------------------------------------------- created objects: security
def test_decoding_a_by_value_object_in_the_arguments_does_not_make_it_persistent(client):
    """Honest clients send DataClayObjects as references only; a by-value one (NEWOBJ of an
    allowed model class) in a call's arguments is now made persistent by DataClayObject.__new__
    (lifecycle.on_create) while the backend decodes the arguments, and stored with the request
    even though the method ignores it: decoding a payload has a persistent side effect."""
    backend_id = list(client.get_backends())[0]
    target = Maker(1)
    target.make_persistent(backend_id=backend_id)
    before = _owned_objects(client, backend_id)
    carrier = Decoy()
    payload = _hostile_payload(((carrier,), {}), {id(carrier): {"value": 666}})
    _call_raw(client, target, "take", payload)
    assert _owned_objects(client, backend_id) == before  # failed (defect): one more object, made by decoding


def test_a_forged_by_value_argument_cannot_replace_another_objects_instance(client):
    """The by-value object's BUILD runs DataClayObject.__setstate__, which (the object being
    REGISTERED by __new__ now) updates __dict__ with whatever the peer sent, _dc_id included.
    The request then registers it under the victim's id (the directory takes it as a replay:
    same class, same owner), and LocalObjects.remember puts it in the identity map in place of
    the victim: the victim's state is the attacker's, through a method that ignores its argument."""
    backend_id = list(client.get_backends())[0]
    victim = Maker(13)
    victim.make_persistent(backend_id=backend_id)
    target = Maker(1)
    target.make_persistent(backend_id=backend_id)
    carrier = Maker()
    forged_state = {"_dc_id": victim.id, "_dc_revision": 10**6, "value": 666, "held": []}
    payload = _hostile_payload(((carrier,), {}), {id(carrier): forged_state})
    _call_raw(client, target, "take", payload)
    assert victim.value == 13  # failed (defect): 666


def test_a_forged_by_value_argument_cannot_make_a_backend_drop_another_objects_registration(client):
    """Clients may not call DropObjects. But Requests.store_created, when the registration of
    what an active method created is refused (AlreadyExistError: nothing was registered),
    drops every id it tried to register, read from the objects' __dict__ -- which a by-value
    argument sets (_dc_id) to any object this backend owns. The directory lets the backend drop
    its own objects: the victim's registration and alias are gone."""
    backend_ids = list(client.get_backends())
    victim = Node(13)
    victim.make_persistent(alias="review-victim", backend_id=backend_ids[0])
    creator, holder = Node(1), Node(2)
    creator.make_persistent(backend_id=backend_ids[0])
    holder.make_persistent(backend_id=backend_ids[1])
    carrier = Decoy()  # another class: registering it under the victim's id is refused
    payload = _hostile_payload(((holder, 5), {"then": carrier}), {id(carrier): {"_dc_id": victim.id}})
    with pytest.raises(Exception):  # noqa: B017 - the forged object arrives as a plain copy: the method fails on it
        _call_raw(client, creator, "create_and_give", payload)  # settles (hands a child to holder) first
    found = Node.get_by_alias("review-victim")  # failed (defect): the alias (and the registration) were dropped
    assert found.value == 13


# ---------------------------------------------------------------- created objects: semantics
def test_an_object_created_inside_a_method_can_be_found_by_id_there(client):
    """The commit says created objects are stored and registered before the directory is
    asked about them; get_by_id (LocateObject) does not settle them first."""
    maker = Maker(1)
    maker.make_persistent(backend_id=list(client.get_backends())[0])
    assert maker.create_and_find(7) == 7  # failed (defect): ObjectNotRegisteredError


def test_a_failing_constructor_run_by_create_object_leaves_behind_only_what_it_made_visible(client):
    """CreateObject (a stub's constructor): a failing __init__ leaves nothing behind, neither the
    object nor what it created, unless it made a sub-object visible before failing (an alias, a
    call to another backend, a move): that one was stored and registered then, and references to
    it may be held elsewhere, so it stays (README, "Migrating from dataClay")."""
    rt = client.runtime

    def owned_everywhere() -> int:
        return sum(_owned_objects(client, backend_id) for backend_id in client.get_backends())

    before = owned_everywhere()
    for _ in range(3):
        with pytest.raises(ValueError):
            run_blocking(ops.create_object(rt, rt.blocking, "makers.FailingInitQuietly", (), {}))
    assert owned_everywhere() == before
    with pytest.raises(ValueError):
        run_blocking(ops.create_object(rt, rt.blocking, "makers.FailingInit", ("review-orphan",), {}))
    assert Decoy.get_by_alias("review-orphan").value == 41  # made visible: kept


# ---------------------------------------------------------------- async methods
def test_an_async_method_settling_what_it_created_does_not_block_the_event_loop(make_cluster):
    """Requests.store_created runs on the backend's event loop when an `async def` method
    hands a new object to another backend: a blocking RegisterObjects call (and SQLite write)
    there. With the metadata service slow (stopped here), every other async method of that
    backend waits for it; the contract says the loop never blocks on what others hold."""
    cluster = make_cluster(backends=2)
    metadata = cluster.metadata.popen

    async def scenario() -> None:
        async with Client(host="127.0.0.1", port=cluster.port) as client:
            backend_ids = list(await client.a_get_backends())
            creator, other, quick = Maker(1), Maker(2), Maker(3)
            await creator.a_make_persistent(backend_id=backend_ids[0])
            await other.a_make_persistent(backend_id=backend_ids[1])
            await quick.a_make_persistent(backend_id=backend_ids[0])
            assert await quick.a_quick() == 3
            os.kill(metadata.pid, signal.SIGSTOP)
            try:
                started = time.monotonic()
                assert await asyncio.wait_for(quick.a_quick(), 10) == 3  # control: needs no metadata
                assert time.monotonic() - started < 1
                creating = asyncio.ensure_future(creator.a_create_and_give(other, 5))
                deadline = time.monotonic() + 15
                while not creating.done() and time.monotonic() < deadline:
                    started = time.monotonic()
                    try:
                        await asyncio.wait_for(quick.a_quick(), 5)
                    except asyncio.TimeoutError:
                        pytest.fail("an unrelated async method waited 5 s for the backend's event loop, "
                                    "blocked in store_created's RegisterObjects")
            finally:
                os.kill(metadata.pid, signal.SIGCONT)
            await asyncio.wait({creating}, timeout=60)

    asyncio.run(scenario())


# ---------------------------------------------------------------- coalesced stores
def test_a_cancelled_first_store_does_not_strand_the_stores_that_joined_it(cluster):
    """StoreCoalescer.store: the first store of a batch (its leader) yields once with the batch
    open; if it is cancelled there (asyncio.wait_for, a TaskGroup's sibling failing), the
    CancelledError leaves the batch in _open and never flushed: every store that joined it,
    and every later store for that backend that fits, waits forever."""

    async def scenario() -> None:
        async with Client(host="127.0.0.1", port=cluster.port) as client:
            backend_id = list(await client.a_get_backends())[0]
            first, second, third = Decoy(), Decoy(), Decoy()
            leader = asyncio.ensure_future(first.a_make_persistent(backend_id=backend_id))
            joiner = asyncio.ensure_future(second.a_make_persistent(backend_id=backend_id))
            await asyncio.sleep(0)  # leader waits in the coalescer's yield, joiner in the batch
            leader.cancel()
            done, _ = await asyncio.wait({joiner}, timeout=15)
            assert joiner in done, "a store that joined a cancelled leader's batch never finished"
            await asyncio.wait_for(third.a_make_persistent(backend_id=backend_id), 15)

    asyncio.run(scenario())


# ---------------------------------------------------------------- dataClay's object-store API
def test_get_properties_of_a_plain_object_keeps_its_plain_references(client):
    """ops.get_properties pickles a local object's state with make_ref, so a reference to
    another not-yet-persistent object becomes a Ref with no owner, and reading it back makes
    a proxy of an object nobody registered: the dict holds a dangling proxy, not the object."""
    head, tail = Node(1), Node(2)
    head.next = tail
    properties = head.get_properties()
    assert properties["next"] is tail  # failed (defect): a proxy of an unregistered id
    assert properties["next"].value == 2


# ---------------------------------------------------------------- StoreRawObject
def test_store_raw_object_refuses_a_by_value_object_in_its_state_with_a_typed_error(client):
    """Incoming.store_raw reads the metadata state with references refused, but a by-value
    DataClayObject (NEWOBJ of a model class) reads fine and is only caught when the state is
    pickled again (_no_reference raises TypeError): the caller gets an internal error, not
    InvalidRequestError naming what is wrong."""
    from dataclay.exceptions import InvalidRequestError
    from dataclay.protocol import codec

    rt = client.runtime
    backend_id = list(client.get_backends())[0]
    info = client.get_backends()[backend_id]
    carrier = Decoy()
    state = _hostile_payload({"value": carrier}, {id(carrier): {"value": 1}})
    request = codec.RawStore(uuid.uuid4().bytes, "makers.Maker", "", "held", state, b"x" * 1024)
    with pytest.raises(InvalidRequestError):
        run_blocking(rt.blocking.backend(info, "StoreObjects", request))


def test_a_reference_read_while_its_creator_runs_names_a_registered_object(client, tmp_path):
    """Reads take no object lock, so another request can read a property an active method just
    set to an object it created. Before, that request made the (then plain) object persistent
    itself; now it is already REGISTERED (lifecycle.on_create) and the reply carries a
    reference to an object neither stored nor registered until the creator's request ends
    (or never: kill -9, a failed store). Its holder cannot use it meanwhile."""
    creator = Maker(1)
    creator.make_persistent(backend_id=list(client.get_backends())[0])
    release = tmp_path / "release"
    caller = threading.Thread(target=lambda: creator.create_keep_and_wait(5, str(release)), daemon=True)
    try:
        caller.start()
        deadline = time.monotonic() + 30
        while (child := creator.child) is None:  # the creator set it and now waits for `release`
            assert time.monotonic() < deadline, "the creator never set its child"
        assert child.value == 5  # failed (defect): ObjectNotRegisteredError (the reply named an unregistered object)
    finally:
        release.touch()
        caller.join(60)


def test_a_constructor_that_fails_inside_a_method_leaves_no_half_built_persistent_object(client):
    """DataClayObject.__new__ registers the object before __init__ runs; if __init__ raises
    and the method catches it, the half-built object (no reference to it anywhere) is stored
    and registered with the request. CreateObject discards such objects; a creation inside a
    method does not."""
    from makers import Builder

    backend_id = list(client.get_backends())[0]
    builder = Builder()
    builder.make_persistent(backend_id=backend_id)
    before = _owned_objects(client, backend_id)
    assert builder.try_build() is False
    assert _owned_objects(client, backend_id) == before  # failed (defect): one more (a half-built BadInit)


def test_a_forged_by_value_argument_cannot_change_another_objects_class_in_the_directory(make_cluster):
    """The attack above, followed to its end: store_created's failure path forgets and
    discards the created objects by their __dict__ id (the forged one), not by the key the
    scope holds them under, so the forged object stays in the scope; the request's own
    store_changes then registers it again -- under the victim's id, which was just dropped,
    as a Decoy. From then on the directory says the victim is a Decoy: a fresh client gets a
    proxy of the wrong class, and the alias is gone for good."""
    cluster = make_cluster(backends=2)
    with Client(host="127.0.0.1", port=cluster.port) as client:
        backend_ids = list(client.get_backends())
        victim = Node(13)
        victim.make_persistent(alias="review-victim-2", backend_id=backend_ids[0])
        victim_id = victim.id
        creator, holder = Node(1), Node(2)
        creator.make_persistent(backend_id=backend_ids[0])
        holder.make_persistent(backend_id=backend_ids[1])
        carrier = Decoy()
        payload = _hostile_payload(((holder, 5), {"then": carrier}), {id(carrier): {"_dc_id": victim_id}})
        with pytest.raises(Exception):  # noqa: B017 - the forged object arrives as a plain copy: the method fails on it
            _call_raw(client, creator, "create_and_give", payload)
        rt = client.runtime
        entry = run_blocking(rt.blocking.metadata("LocateObject", pb.ObjectRequest(object_id=victim_id.bytes)))
    assert entry.class_path == "shapes.Node"  # failed (defect): makers.Decoy


def test_an_in_place_change_after_a_settle_is_stored_with_the_call(make_cluster):
    """Requests.store_created forgets the created objects (not touched by the request any
    more). An owned object whose mutable value the method took stays touched until the
    request is stored, so changing that value in place later is stored; a created object's
    value taken before the settle and changed after it is not: the call is acknowledged, the
    change lives only in memory and is gone after kill -9 (or an eviction); the next request
    that happens to touch the object stores it as its own."""
    cluster = make_cluster(backends=2)
    with Client(host="127.0.0.1", port=cluster.port) as client:
        backends = client.get_backends()
        backend_ids = list(backends)
        creator, other = Maker(1), Maker(2)
        creator.make_persistent(backend_id=backend_ids[0])
        other.make_persistent(backend_id=backend_ids[1])
        child = creator.create_mutate_after_settle(other)  # acknowledged: the list holds 5
        # (no read first: a later request that touches the child would store the change for it)
        name = backends[backend_ids[0]].name
        cluster.kill_backend(name)
        cluster.start_backend(int(name.rsplit("-", 1)[1]))
        assert child.held == [5]  # failed (defect): [] (the acknowledged change was never stored)


def test_an_object_created_in_a_method_and_handed_out_from_a_worker_thread_is_found(client):
    """settle_created finds the request through the SCOPE context variable, which a worker
    thread the method starts (ThreadPoolExecutor, threading.Thread) does not inherit: a call
    made from there sends a reference to the created object (REGISTERED already) without
    storing or registering it first. Before, the object was plain there and became persistent
    on the callee's backend; now the callee cannot find it."""
    backend_ids = list(client.get_backends())
    creator, other = Maker(1), Maker(2)
    creator.make_persistent(backend_id=backend_ids[0])
    other.make_persistent(backend_id=backend_ids[1])
    assert creator.create_and_give_from_a_thread(other, 9) == 9  # failed (defect): ObjectNotRegisteredError
