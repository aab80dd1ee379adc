"""The exception tree, and how exceptions cross the wire.

Every DataClayException subclass defined in this project's packages is in the allow-list
(`_REGISTRY`, by class name, which must be unique). A
server turns an exception into a gRPC status code plus an `ErrorDetail` (class name, message,
structured fields); the client rebuilds the same class from the allow-list. Nothing is ever
recognised by matching message strings. An exception raised by user code inside an active
method is never pickled: it travels as its class path plus its args and attributes, which must be
plain values (`dataclay.serialization`'s allow-list, read back by the restricted `loads`), and
the caller rebuilds it only if the class is an exception class it can look up the same way
(builtin, or from a module that is not in the standard library or is already imported there: the
model modules); otherwise it gets a RemoteActiveMethodError with the message and the traceback.
"""
from __future__ import annotations

import traceback
import uuid
from typing import ClassVar

import grpc

from dataclay.protocol import dataclay_pb2 as pb

_REGISTRY: dict[str, type["DataClayException"]] = {}


class DataClayException(Exception):
    """Base of every error this system raises on purpose. `fields` are structured and typed
    by name (object_id, backend_id, alias, ...); they also appear as attributes."""

    grpc_code: ClassVar[grpc.StatusCode] = grpc.StatusCode.INTERNAL

    def __init__(self, message: str = "", **fields: object) -> None:
        super().__init__(message)
        self.message = message
        self.fields = {key: str(value) for key, value in fields.items() if value is not None}
        for key, value in fields.items():
            setattr(self, key, _typed(key, value))

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__module__.split(".")[0] in ("dataclay", "dataclay_backend", "dataclay_operator"):
            if cls.__name__ in _REGISTRY:
                raise TypeError(f"two exception classes named {cls.__name__}: names cross the wire, keep them unique")
            _REGISTRY[cls.__name__] = cls

    def __reduce__(self):  # picklable with its fields (used by the test harness and users)
        return (_rebuild, (type(self).__name__, self.message, self.fields))

    def __str__(self) -> str:
        # The message as written: KeyError (a base of some of ours, below) would quote it.
        return BaseException.__str__(self)


_REGISTRY["DataClayException"] = DataClayException


def _typed(key: str, value: object) -> object:
    """Fields travel as text; ids (`*_id`) are UUIDs again on the other side."""
    if key.endswith("_id") and isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            return value
    return value


def _rebuild(type_name: str, message: str, fields: dict[str, str]) -> DataClayException:
    cls = _REGISTRY.get(type_name, DataClayException)
    return cls(message, **fields)


class DoesNotExistError(DataClayException):
    grpc_code = grpc.StatusCode.NOT_FOUND


class AlreadyExistError(DataClayException):
    grpc_code = grpc.StatusCode.ALREADY_EXISTS


class ObjectNotRegisteredError(DoesNotExistError):
    """The object is not persistent (never stored, or unknown to the directory)."""


class AliasDoesNotExistError(DoesNotExistError):
    pass


class ReplicaNotFoundError(DoesNotExistError):
    """The backend asked holds no replica of the object that the directory lists (never made
    there, or dropped because it missed a change): read the object from its master."""


class AliasAlreadyExistError(AlreadyExistError):
    pass


class BackendNotFoundError(DoesNotExistError, KeyError):
    """No backend with that id is registered. A KeyError too, as dataClay raises for an
    unknown backend_id (`except KeyError` in dataClay code keeps working)."""


class NoBackendAvailableError(BackendNotFoundError, RuntimeError):
    """No backend takes new objects (none registered, or all draining). A RuntimeError too,
    as dataClay raises when it has no backend to choose from."""


class ClassNotFoundError(DoesNotExistError, ImportError):
    """The backend cannot import the object's class (model code missing on its path). An
    ImportError too, as the failed import is in dataClay."""

    grpc_code = grpc.StatusCode.FAILED_PRECONDITION


class ActiveMethodNotFoundError(DoesNotExistError, AttributeError):
    """The class has no active method of that name (an AttributeError too, as calling a
    method a class does not have is in Python and in dataClay)."""


class AttributeNotFoundError(DoesNotExistError, AttributeError):
    """The object has no such persistent property, or it was never set (an AttributeError
    too, so hasattr() and getattr(obj, name, default) work on proxies)."""


class ObjectWithWrongBackendIdError(DataClayException):
    """The object is not owned by the backend that was asked; `backend_id` names the owner
    when it is known. Clients handle it by fixing their location cache and retrying."""

    grpc_code = grpc.StatusCode.FAILED_PRECONDITION


class BackendError(DataClayException):
    """A backend failed for a reason of its own."""


class BackendDrainingError(BackendError):
    """The backend is being drained (it is about to go away): put new objects elsewhere."""

    grpc_code = grpc.StatusCode.FAILED_PRECONDITION


class BackendNotDrainedError(BackendError):
    """A backend that still owns objects (or is not marked draining) cannot be deregistered:
    drain it first (`dataclay drain NAME`, or lower the DataClay's replicas)."""

    grpc_code = grpc.StatusCode.FAILED_PRECONDITION


class BackendUnavailableError(BackendError):
    """A backend (or the metadata service) could not be reached; the message names it.
    Raised as is (not a subclass below) by a transport, the request was never sent."""

    grpc_code = grpc.StatusCode.UNAVAILABLE
    not_sent = False  # set (never on the wire) by the transport that could not connect


class CallOutcomeUnknownError(BackendUnavailableError):
    """The call was sent, then its server stopped answering (the connection broke, or no reply
    within the deadline): it may or may not have taken effect there. It is not sent again on
    its own unless it is idempotent (dataclay.protocol.IDEMPOTENT): read the object's state
    before repeating a change."""


class DeadlineExceededError(CallOutcomeUnknownError):
    """No reply within the call's deadline (Client(timeout=..., method_timeout=...),
    DC_CALL_TIMEOUT, DC_METHOD_TIMEOUT): the server is stopped, overloaded or the call is longer
    than the deadline allows. The call may still run there: check before repeating a change;
    raise the deadline for long active methods."""

    grpc_code = grpc.StatusCode.DEADLINE_EXCEEDED


class ObjectIsNotVersionError(DataClayException):
    grpc_code = grpc.StatusCode.FAILED_PRECONDITION


class VersionConflictError(DataClayException):
    """An ancestor of the version changed since the version was taken (or a sibling was
    consolidated first); nothing was written. Use force=True to overwrite anyway."""

    grpc_code = grpc.StatusCode.ABORTED


class VersionRetiredError(DoesNotExistError):
    """The version was discarded (or consolidated); its original is `original_id`."""


class VersionConsolidatedError(VersionRetiredError):
    """The version was consolidated into its original (`original_id`), which answers for it
    now, as dataClay's version proxy takes the original's identity. Clients follow it on their
    own, like a move; it reaches user code only where nothing can follow it."""


class StateHookError(DataClayException):
    """A class's own __getstate__ / __setstate__ used another persistent object (read its
    properties or called its methods). They run while a backend loads or stores the object,
    holding what that needs, so they may use only their own object and the state they get."""

    grpc_code = grpc.StatusCode.FAILED_PRECONDITION


def retired_error(object_id: object, original_id: object, consolidated: bool) -> VersionRetiredError:
    """What a retired version answers (the directory, and the backend that retired it): a
    consolidated one forwards to its original (callers follow it), a discarded one is gone."""
    if consolidated:
        return VersionConsolidatedError(
            f"version {object_id} was consolidated into {original_id}, which answers for it",
            object_id=object_id, original_id=original_id)
    return VersionRetiredError(
        f"version {object_id} was discarded; use its original {original_id}",
        object_id=object_id, original_id=original_id)


class OutcomeUnknownError(DataClayException):
    """The metadata service could not be asked whether the operation committed; it is settled
    (all or nothing) as soon as the service answers again. Check the objects before retrying."""

    grpc_code = grpc.StatusCode.UNAVAILABLE


class ObjectBusyError(DataClayException):
    """The object stayed locked by other calls for too long; nothing was changed."""

    grpc_code = grpc.StatusCode.UNAVAILABLE


class ObjectInDoubtError(ObjectBusyError):
    """The object was being moved when the metadata service stopped answering: which backend
    owns it is settled as soon as the service answers again, and until then no backend serves
    it. Nothing was changed; try again shortly."""


class ObjectRolledBackError(ObjectBusyError):
    """The call used a change of the object made by another call that failed before its
    change was stored; so nothing of this call was stored either. Try again."""


class ResourceExhaustedError(DataClayException):
    """A limit of the server was reached (a message larger than DC_MAX_MESSAGE, more concurrent
    calls than DC_MAX_CONCURRENT_RPCS, more ids in one call than the metadata service takes);
    nothing was done, and the server goes on serving. Retry later, or send less at a time."""

    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class ObjectMovingError(DataClayException):
    grpc_code = grpc.StatusCode.UNAVAILABLE


class InvalidRequestError(DataClayException):
    """A malformed request: bad ids, undecodable payload, wrong argument types."""

    grpc_code = grpc.StatusCode.INVALID_ARGUMENT


class InvalidAliasError(InvalidRequestError, AttributeError):
    """An empty alias (or one the metadata service refuses). An AttributeError too, as
    dataClay raises for an empty alias."""


class ClassNotAllowedError(InvalidRequestError):
    """Data from a peer named a class or function that is not in the allow-list of
    `dataclay.serialization` (`class_path` names it; DC_PICKLE_ALLOW extends the list). Nothing
    it names was called."""


class ClusterMismatchError(DataClayException):
    """A backend's data directory belongs to another metadata database."""

    grpc_code = grpc.StatusCode.FAILED_PRECONDITION


class BackendRetiredError(ClusterMismatchError):
    """The backend id was drained and deregistered: it never serves again. A backend whose data
    directory is empty takes a new id by itself; one that holds objects refuses to start."""


class BackupError(DataClayException):
    """A backup of the metadata database could not be taken (no backup directory configured,
    or writing it failed: the message says which); the database itself is unchanged."""

    grpc_code = grpc.StatusCode.FAILED_PRECONDITION


class RestoreError(DataClayException):
    """The metadata service refused to start from a backup: the file is not a usable backup, or
    the data directory already holds another database (the message says which, and what to do).
    Nothing was changed."""

    grpc_code = grpc.StatusCode.FAILED_PRECONDITION


class StorageFullError(DataClayException):
    """A server's disk (or its quota) is full: the change was not stored, and nothing of it
    is visible (the object keeps its stored value; a failed make_persistent leaves no
    directory entry). The message names the server (`backend_id`, when it is a backend):
    free space in its data directory or give it a larger volume, then try again."""

    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class RemoteActiveMethodError(DataClayException):
    """User code raised an exception that cannot be rebuilt on the caller (not picklable or
    its class is not importable here); the message carries the remote traceback."""

    grpc_code = grpc.StatusCode.UNKNOWN


# ------------------------------------------------------------------ wire encoding


def _no_references(value: object) -> object:
    raise TypeError("an exception's args cannot hold references to objects")


def to_detail(exc: BaseException) -> tuple[grpc.StatusCode, pb.ErrorDetail]:
    """Encode any exception for the wire: ours by class and fields, user ones (including
    users' own subclasses of ours) by class path, args and attributes (plain values only; an
    exception that holds anything else arrives as a RemoteActiveMethodError)."""
    from dataclay import serialization

    if isinstance(exc, DataClayException) and _REGISTRY.get(type(exc).__name__) is type(exc):
        return exc.grpc_code, pb.ErrorDetail(
            type=type(exc).__name__, message=exc.message, fields=exc.fields
        )
    remote_tb = "".join(traceback.format_exception(exc))
    try:
        reduced = exc.__reduce__()  # (class, args[, attributes]) for exceptions, with OSError's filename...
        if not (type(reduced) is tuple and len(reduced) in (2, 3) and reduced[0] is type(exc)):
            reduced = (type(exc), exc.args, vars(exc))  # ...or a class of its own __reduce__ (ours)
        attributes = reduced[2] if len(reduced) == 3 else None
        arguments = serialization.dumps((tuple(reduced[1]), dict(attributes or {})), _no_references)
    except Exception:  # an exception holding other values still arrives, as text
        arguments = b""
    return grpc.StatusCode.UNKNOWN, pb.ErrorDetail(
        type="RemoteActiveMethodError",
        message=f"{type(exc).__name__}: {exc}",
        fields={"class_path": serialization.class_path(type(exc))},
        user_class=serialization.class_path(type(exc)) if arguments else "",
        user_arguments=arguments,
        remote_traceback=remote_tb,
    )


def _user_exception(detail: pb.ErrorDetail) -> BaseException | None:
    """The user's exception rebuilt from its class path and plain-value args and attributes,
    or None if the class is not an exception class allowed here or the values are not plain."""
    from dataclay import serialization

    try:
        module, _, qualname = detail.user_class.rpartition(".")
        cls = serialization.exception_class(module, qualname)
        args, attributes = serialization.loads(detail.user_arguments, _no_references)
        if type(args) is not tuple or type(attributes) is not dict:
            return None
        try:
            exc = cls(*args)  # as pickle would: the class is one this process has (builtin or model code)
        except Exception:
            exc = cls.__new__(cls, *args)
            exc.args = args
        for name, value in attributes.items():
            if type(name) is str and not callable(getattr(cls, name, None)):  # state, never a method
                setattr(exc, name, value)
        if detail.remote_traceback:
            exc.add_note("Raised in an active method on the backend:\n" + detail.remote_traceback)
    except Exception:
        return None
    return exc


def from_detail(detail: pb.ErrorDetail) -> BaseException:
    """Rebuild the exception from the allow-list (a user's exception from its class path and
    plain values, never by unpickling anything else)."""
    if detail.user_class:
        exc = _user_exception(detail)
        if exc is not None:
            return exc
    cls = _REGISTRY.get(detail.type)
    if cls is None:
        return DataClayException(f"{detail.type}: {detail.message}")
    message = detail.message
    if detail.remote_traceback and cls is RemoteActiveMethodError:
        message = f"{message}\n{detail.remote_traceback}"
    fields = {key: value for key, value in detail.fields.items()
              if key.isidentifier() and not key.startswith("_") and key not in ("message", "fields", "args")}
    return cls(message, **fields)
