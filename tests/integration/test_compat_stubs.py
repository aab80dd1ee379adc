"""StubDataClayObject (dataClay 4): persistent objects used by class name from a client that does
not have their model. The client runs in its own process, whose import path lacks the models
(the backends have them); the full-model client (this process) sees the same objects."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from family import Person

STUB_CLIENT = textwrap.dedent("""
    import sys
    from dataclay import Client, StubDataClayObject
    from dataclay.exceptions import ActiveMethodNotFoundError, AttributeNotFoundError

    try:
        import family  # noqa: F401
    except ModuleNotFoundError:
        pass
    else:
        sys.exit("the model is importable here: this would not test stubs")

    with Client(host="127.0.0.1", port=int(sys.argv[1])) as client:
        PersonStub = StubDataClayObject["family.Person"]
        assert StubDataClayObject["family.Person"] is PersonStub  # one class per class name
        alice = PersonStub(name="Alice", age=30)  # created on a backend, __init__ run there
        assert alice.is_persistent and alice.name == "Alice" and alice.age == 30
        alice.age = 31
        assert alice.add_year() == 32 and alice.age == 32
        bob = PersonStub("Bob", 40)
        alice.marry(bob)  # a stub passed as an argument is a reference
        spouse = alice.spouse  # a reference back: a stub of its class, the same instance
        assert type(spouse) is PersonStub and spouse is bob and spouse.spouse is alice
        alice.add_alias("stub-alice")
        again = PersonStub.get_by_alias("stub-alice")
        assert again is alice and again.add_year() == 33
        for missing in ("height", "fly"):
            try:
                getattr(alice, missing)
            except AttributeError as exc:
                assert "family.Person" in str(exc), exc
            else:
                sys.exit(f"{missing} should not exist")
        # a creation whose __init__ fails stores nothing (one request on the backend)
        from dataclay.exceptions import InvalidRequestError
        from dataclay.protocol import dataclay_pb2 as pb
        from dataclay.protocol.pages import owned_objects
        from dataclay.transport import run_blocking

        from dataclay.runtime import current_runtime

        rt = current_runtime()

        def stored() -> int:
            total = 0
            for backend_id, info in client.get_backends().items():  # each registers what it stored first
                run_blocking(rt.blocking.backend(info, "FlushRegistrations", pb.FlushRegistrationsRequest()))
                total += len(owned_objects(lambda r: run_blocking(rt.blocking.metadata("ListOwnedObjects", r)),
                                           backend_id.bytes))
            return total

        before = stored()
        try:
            PersonStub("only a name")  # __init__ needs an age
        except InvalidRequestError as exc:
            assert "__init__" in str(exc), exc
        else:
            sys.exit("a failing __init__ must raise")
        assert stored() == before, (before, stored())
        print("stubs ok", alice.id, bob.id)
""")


def test_stubs_create_read_write_call_and_reference_objects_without_the_model(cluster, client):
    env = {**os.environ, "PYTHONPATH": ""}  # the installed dataclay only: no tests/models
    done = subprocess.run([sys.executable, "-c", STUB_CLIENT, str(cluster.port)], capture_output=True, text=True,
                          timeout=120, env=env, cwd="/")
    assert done.returncode == 0, done.stderr + done.stdout
    *_, alice_id, bob_id = done.stdout.split()
    alice = Person.get_by_alias("stub-alice")  # the model's own class sees the same objects
    assert str(alice.id) == alice_id and alice.age == 33 and alice.name == "Alice"
    assert str(alice.spouse.id) == bob_id and alice.spouse.spouse is alice


def test_a_class_info_naming_the_stubs_own_machinery_is_refused_and_installs_nothing(cluster, client):
    """A backend's class info is data from the network: names that would replace what a stub class
    is made of (its attribute access, its API, its finaliser) are refused, typed, and nothing is
    installed (hostile_info.Shapeshifter answers as a rogue backend could)."""
    import pytest

    from dataclay import StubDataClayObject
    from dataclay.exceptions import InvalidRequestError

    Stub = StubDataClayObject["hostile_info.Shapeshifter"]
    with pytest.raises(InvalidRequestError) as refused:
        Stub._dc_stub_learn()
    assert "__getattribute__" in str(refused.value)
    for name in ("__getattribute__", "make_persistent", "__del__", "value"):
        assert name not in vars(Stub), f"{name} was installed on the stub class"
