"""Our typed errors are also the built-in exceptions dataClay 4 raises for the same situation
(so `except KeyError` in dataClay code keeps working), read as written (KeyError would quote
the message), and keep both natures across the wire and through pickle."""
import pickle

import pytest

from dataclay.exceptions import (
    ActiveMethodNotFoundError,
    AttributeNotFoundError,
    BackendNotFoundError,
    ClassNotFoundError,
    DataClayException,
    DoesNotExistError,
    InvalidAliasError,
    InvalidRequestError,
    NoBackendAvailableError,
    from_detail,
    to_detail,
)

# (our error, the built-in dataClay raises for the same situation)
AS_DATACLAY_RAISES = [
    (BackendNotFoundError, KeyError),  # make_persistent / move / new_version to an unknown backend_id
    (NoBackendAvailableError, RuntimeError),  # make_persistent with no backend to choose from
    (InvalidAliasError, AttributeError),  # an empty alias
    (AttributeNotFoundError, AttributeError),  # a property never set
    (ActiveMethodNotFoundError, AttributeError),  # a method the class does not have
    (ClassNotFoundError, ImportError),  # the model class cannot be imported
]


@pytest.mark.parametrize("ours, builtin", AS_DATACLAY_RAISES, ids=lambda c: c.__name__)
def test_a_typed_error_is_also_the_builtin_dataclay_raises(ours, builtin):
    error = ours("no backend 1234 is registered", backend_id="1234")
    assert isinstance(error, builtin) and isinstance(error, DataClayException)
    with pytest.raises(builtin):
        raise error


@pytest.mark.parametrize("ours, builtin", AS_DATACLAY_RAISES, ids=lambda c: c.__name__)
def test_its_message_reads_as_written_not_quoted_as_a_key(ours, builtin):
    error = ours("no backend 1234 is registered")
    assert str(error) == "no backend 1234 is registered"
    assert "'" not in str(error)


@pytest.mark.parametrize("ours, builtin", AS_DATACLAY_RAISES, ids=lambda c: c.__name__)
def test_it_keeps_both_types_and_its_fields_across_the_wire(ours, builtin):
    error = ours("no backend 1234 is registered", backend_id="12345678-1234-5678-1234-567812345678")
    _, detail = to_detail(error)
    rebuilt = from_detail(detail)
    assert type(rebuilt) is ours and isinstance(rebuilt, builtin)
    assert str(rebuilt) == str(error) and rebuilt.fields == error.fields
    unpickled = pickle.loads(pickle.dumps(error))
    assert type(unpickled) is ours and str(unpickled) == str(error)


def test_the_kinds_stay_in_our_tree():
    assert issubclass(BackendNotFoundError, DoesNotExistError)
    assert issubclass(NoBackendAvailableError, BackendNotFoundError)
    assert issubclass(InvalidAliasError, InvalidRequestError)


def test_a_lookup_error_is_not_mistaken_for_another():
    # A KeyError from user code is not one of ours: `except BackendNotFoundError` does not catch it.
    with pytest.raises(KeyError):
        try:
            {}["missing"]
        except BackendNotFoundError:  # pragma: no cover - the assertion is that this does not run
            pytest.fail("a plain KeyError was taken for BackendNotFoundError")
