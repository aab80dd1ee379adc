"""dataClay 4 code's error handling works unchanged against separate backend processes: the
built-in exceptions dataClay raises (KeyError for an unknown backend, AttributeError for an
empty alias, ImportError for a class the backend cannot import) are raised here too, as our
typed errors."""
import uuid

import pytest

from dataclay.exceptions import BackendNotFoundError, ClassNotFoundError, InvalidAliasError
from hr import Employee
from secret_model import Unknown


def test_an_unknown_backend_id_is_a_key_error_for_make_persistent_move_and_new_version(client):
    unknown = uuid.uuid4()
    loose = Employee("Loose", 1.0)
    with pytest.raises(KeyError) as raised:
        loose.make_persistent(backend_id=unknown)
    assert isinstance(raised.value, BackendNotFoundError) and raised.value.backend_id == unknown
    assert str(raised.value).startswith(f"no backend {unknown} is registered")  # readable, not quoted
    assert not loose._dc_is_registered

    stored = Employee("Stored", 1.0)
    stored.make_persistent()
    with pytest.raises(KeyError):
        stored.move(unknown)
    with pytest.raises(KeyError):
        stored.new_version(backend_id=unknown)
    assert stored.salary == 1.0


def test_an_empty_alias_is_an_attribute_error_and_stores_nothing(client):
    loose = Employee("Loose", 1.0)
    with pytest.raises(AttributeError) as raised:
        loose.make_persistent(alias="")
    assert isinstance(raised.value, InvalidAliasError)
    assert not loose._dc_is_registered
    loose.make_persistent()
    with pytest.raises(AttributeError):
        loose.add_alias("")
    assert loose.get_aliases() == set()


def test_a_class_the_backend_cannot_import_is_an_import_error(client):
    obj = Unknown()
    obj.value = 1
    with pytest.raises(ImportError) as raised:
        obj.make_persistent()
    assert isinstance(raised.value, ClassNotFoundError) and "secret_model.Unknown" in str(raised.value)
    assert not obj._dc_is_registered


# ------------------------------------------------------------------ messages users match on
def test_messages_users_match_on_keep_dataclay_wording(client):
    from dataclay.exceptions import (
        AliasAlreadyExistError,
        AliasDoesNotExistError,
        ObjectIsNotVersionError,
        ObjectNotRegisteredError,
    )

    loose = Employee("Loose", 1.0)
    with pytest.raises(ObjectNotRegisteredError, match=f"Object {loose._dc_id} is not registered!"):
        loose.get_aliases()
    with pytest.raises(ObjectNotRegisteredError, match=f"Object {loose._dc_id} is not registered!"):
        loose.consolidate_version()
    missing = uuid.uuid4()
    with pytest.raises(ObjectNotRegisteredError, match=f"Object {missing} is not registered!"):
        Employee.get_by_id(missing).salary

    stored = Employee("Stored", 1.0)
    alias = f"compat-{uuid.uuid4().hex[:8]}"
    stored.make_persistent(alias=alias)
    with pytest.raises(ObjectIsNotVersionError, match=f"Object {stored._dc_id} is not a version!"):
        stored.consolidate_version()
    with pytest.raises(AliasAlreadyExistError, match=f"{alias} already exists"):
        Employee("Other", 2.0).make_persistent(alias=alias)
    with pytest.raises(AliasAlreadyExistError, match=f"{alias} already exists"):
        stored.add_alias(alias)
    Employee.delete_alias(alias)
    with pytest.raises(AliasDoesNotExistError, match=f"{alias} does not exist"):
        Employee.get_by_alias(alias)
    with pytest.raises(AliasDoesNotExistError, match=f"{alias} does not exist"):
        Employee.delete_alias(alias)
    assert stored.salary == 1.0
