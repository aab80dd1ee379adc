"""What the servers check in a request before anything else: aliases, backend registrations,
class paths, property and method names (the one place for them: every RPC that names a property
or a method, in backend_service and incoming, calls here), and how many ids one call may name. A
refusal is an InvalidRequestError (a cap: ResourceExhaustedError) that quotes at most MAX_ECHO
characters of what it refuses, with control characters escaped."""
from __future__ import annotations

import ipaddress
import os
import re
import unicodedata

from dataclay.exceptions import ActiveMethodNotFoundError, AttributeNotFoundError, InvalidRequestError, ResourceExhaustedError
from dataclay.protocol import IDS_PER_MESSAGE

MAX_ALIAS = 256  # characters
MAX_CLASS_PATH = 512
MAX_PROPERTY = 256
MAX_ECHO = 100  # characters of refused input quoted back
# Ids in one call (RegisterObjects, DropObjects, CommitMove, CommitTransaction's retire list): a
# move commits all its objects at once, so the cap is far above the largest move measured (100,000
# objects); DC_MAX_IDS_PER_CALL sets it. Past it: ResourceExhaustedError, nothing done.
DEFAULT_MAX_IDS_PER_CALL = 1_000_000
MAX_IDS_PER_CALL = int(os.environ.get("DC_MAX_IDS_PER_CALL") or DEFAULT_MAX_IDS_PER_CALL)
# Ids in one part of a long list (a ListOwnedObjects page, DropObjects in parts): the cap, and no
# more than fit one message.
IDS_PER_PART = min(MAX_IDS_PER_CALL, IDS_PER_MESSAGE)

_DNS_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
DNS_1123_NAME = re.compile(rf"{_DNS_LABEL}(\.{_DNS_LABEL})*")  # a DNS-1123 subdomain, as Kubernetes names pods
_HOST_LABEL = r"[A-Za-z0-9_]([-A-Za-z0-9_]{0,61}[A-Za-z0-9_])?"
HOST_NAME = re.compile(rf"{_HOST_LABEL}(\.{_HOST_LABEL})*\.?")
CLASS_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+")


def quote(text: str) -> str:
    """Refused input as an error quotes it: at most MAX_ECHO characters, control characters escaped."""
    shown = repr(text[:MAX_ECHO])
    return shown if len(text) <= MAX_ECHO else f"{shown}... ({len(text)} characters)"


def check_alias(alias: str) -> str:
    if not alias:
        raise InvalidRequestError("an alias cannot be empty")
    if len(alias) > MAX_ALIAS:
        raise InvalidRequestError(f"an alias has at most {MAX_ALIAS} characters; this one has {len(alias)}: {quote(alias)}")
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in alias):
        raise InvalidRequestError(f"an alias cannot hold control characters: {quote(alias)}")
    return alias


def check_backend(name: str, host: str, port: int) -> None:
    """A backend registration: a DNS-1123 name (as Kubernetes names pods), a host name or IP
    address, a port in 1-65535."""
    if len(name) > 253 or not DNS_1123_NAME.fullmatch(name):
        raise InvalidRequestError(
            "a backend name is a DNS-1123 name (lowercase letters, digits, '-' and '.', at most 253 characters, "
            f"starting and ending with a letter or digit): {quote(name)}")
    if not 1 <= port <= 65535:
        raise InvalidRequestError(f"a backend port is 1-65535, got {port}")
    address = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ipaddress.ip_address(address)
    except ValueError:
        if len(host) > 253 or not HOST_NAME.fullmatch(host):
            raise InvalidRequestError(f"a backend host is a host name or an IP address: {quote(host)}") from None


def check_class_path(path: str) -> str:
    if len(path) > MAX_CLASS_PATH or not CLASS_PATH.fullmatch(path):
        raise InvalidRequestError(f"a class path is module.QualName (dotted identifiers): {quote(path)}")
    return path


def check_property(name: str) -> str:
    """A property name from a peer: an identifier of at most MAX_PROPERTY characters, neither
    Python's (dunder) nor dataClay's own (`_dc_...`, an object's identity and lineage)."""
    if len(name) > MAX_PROPERTY or not name.isidentifier():
        raise InvalidRequestError(
            f"a property name is a Python identifier of at most {MAX_PROPERTY} characters: {quote(name)}")
    if name.startswith("__") or name.startswith("_dc_"):
        raise InvalidRequestError(f"{quote(name)} is not a property: names starting with __ or _dc_ are private")
    return name


def property_of(cls: type, name: str, object_id: object = None) -> str:
    """`name` as a persistent property of model class `cls` (GetAttribute, SetAttribute,
    SetRawAttribute, UpdateObject, a new state's keys): InvalidRequestError if it is malformed,
    private or a method, AttributeNotFoundError if it is simply not one of its properties."""
    if name in cls._dc_properties:  # the hot path: a property is well-formed by construction
        return name
    check_property(name)
    if callable(getattr(cls, name, None)):
        raise InvalidRequestError(f"{cls.__qualname__}.{name} is a method, not a property", object_id=object_id)
    raise AttributeNotFoundError(
        f"{cls.__qualname__} has no persistent property {name!r}", object_id=object_id, name=name)


def check_method(cls: type, name: str, object_id: object = None) -> object:
    """The active method `name` of `cls` (CallActiveMethod): InvalidRequestError if the name is
    not a bounded identifier, ActiveMethodNotFoundError if it is not an active method."""
    if len(name) > MAX_PROPERTY or not name.isidentifier():
        raise InvalidRequestError(
            f"a method name is a Python identifier of at most {MAX_PROPERTY} characters: {quote(name)}")
    method = getattr(cls, name, None)
    if getattr(method, "_dc_activemethod", None) is None:
        raise ActiveMethodNotFoundError(
            f"{cls.__module__}.{cls.__qualname__} has no active method {name!r}", object_id=object_id, method=name)
    return method


def check_ids(count: int, what: str = "object ids") -> None:
    if count > MAX_IDS_PER_CALL:
        raise ResourceExhaustedError(
            f"{count} {what} in one call; the metadata service takes at most {MAX_IDS_PER_CALL} "
            "(DC_MAX_IDS_PER_CALL): nothing was done, send them in parts")
