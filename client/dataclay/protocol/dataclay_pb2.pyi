from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Retired(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LIVE: _ClassVar[Retired]
    DISCARDED: _ClassVar[Retired]
    CONSOLIDATED: _ClassVar[Retired]
LIVE: Retired
DISCARDED: Retired
CONSOLIDATED: Retired

class Empty(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ErrorDetail(_message.Message):
    __slots__ = ("type", "message", "fields", "remote_traceback", "user_class", "user_arguments")
    class FieldsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TYPE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    REMOTE_TRACEBACK_FIELD_NUMBER: _ClassVar[int]
    USER_CLASS_FIELD_NUMBER: _ClassVar[int]
    USER_ARGUMENTS_FIELD_NUMBER: _ClassVar[int]
    type: str
    message: str
    fields: _containers.ScalarMap[str, str]
    remote_traceback: str
    user_class: str
    user_arguments: bytes
    def __init__(self, type: _Optional[str] = ..., message: _Optional[str] = ..., fields: _Optional[_Mapping[str, str]] = ..., remote_traceback: _Optional[str] = ..., user_class: _Optional[str] = ..., user_arguments: _Optional[bytes] = ...) -> None: ...

class ObjectRecord(_message.Message):
    __slots__ = ("object_id", "class_path", "state", "continues", "revision", "replica_backend_ids")
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    CLASS_PATH_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CONTINUES_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    REPLICA_BACKEND_IDS_FIELD_NUMBER: _ClassVar[int]
    object_id: bytes
    class_path: str
    state: bytes
    continues: bool
    revision: int
    replica_backend_ids: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, object_id: _Optional[bytes] = ..., class_path: _Optional[str] = ..., state: _Optional[bytes] = ..., continues: _Optional[bool] = ..., revision: _Optional[int] = ..., replica_backend_ids: _Optional[_Iterable[bytes]] = ...) -> None: ...

class StoreObjectsRequest(_message.Message):
    __slots__ = ("objects", "alias")
    OBJECTS_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    objects: _containers.RepeatedCompositeFieldContainer[ObjectRecord]
    alias: str
    def __init__(self, objects: _Optional[_Iterable[_Union[ObjectRecord, _Mapping]]] = ..., alias: _Optional[str] = ...) -> None: ...

class ObjectRequest(_message.Message):
    __slots__ = ("object_id",)
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    object_id: bytes
    def __init__(self, object_id: _Optional[bytes] = ...) -> None: ...

class GetAttributeRequest(_message.Message):
    __slots__ = ("object_id", "name")
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    object_id: bytes
    name: str
    def __init__(self, object_id: _Optional[bytes] = ..., name: _Optional[str] = ...) -> None: ...

class SetAttributeRequest(_message.Message):
    __slots__ = ("object_id", "name", "payload")
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    object_id: bytes
    name: str
    payload: bytes
    def __init__(self, object_id: _Optional[bytes] = ..., name: _Optional[str] = ..., payload: _Optional[bytes] = ...) -> None: ...

class RawBytes(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CallRequest(_message.Message):
    __slots__ = ("object_id", "method", "payload")
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    object_id: bytes
    method: str
    payload: bytes
    def __init__(self, object_id: _Optional[bytes] = ..., method: _Optional[str] = ..., payload: _Optional[bytes] = ...) -> None: ...

class Payload(_message.Message):
    __slots__ = ("payload",)
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    payload: bytes
    def __init__(self, payload: _Optional[bytes] = ...) -> None: ...

class BackendStats(_message.Message):
    __slots__ = ("backend_id", "name", "owned_objects", "loaded_objects", "loaded_bytes", "memory_limit")
    BACKEND_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    OWNED_OBJECTS_FIELD_NUMBER: _ClassVar[int]
    LOADED_OBJECTS_FIELD_NUMBER: _ClassVar[int]
    LOADED_BYTES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_LIMIT_FIELD_NUMBER: _ClassVar[int]
    backend_id: bytes
    name: str
    owned_objects: int
    loaded_objects: int
    loaded_bytes: int
    memory_limit: int
    def __init__(self, backend_id: _Optional[bytes] = ..., name: _Optional[str] = ..., owned_objects: _Optional[int] = ..., loaded_objects: _Optional[int] = ..., loaded_bytes: _Optional[int] = ..., memory_limit: _Optional[int] = ...) -> None: ...

class UpdateObjectRequest(_message.Message):
    __slots__ = ("object_id", "state")
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    object_id: bytes
    state: bytes
    def __init__(self, object_id: _Optional[bytes] = ..., state: _Optional[bytes] = ...) -> None: ...

class MoveRequest(_message.Message):
    __slots__ = ("object_ids", "destination", "recursive", "only_owned", "remotes")
    OBJECT_IDS_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    RECURSIVE_FIELD_NUMBER: _ClassVar[int]
    ONLY_OWNED_FIELD_NUMBER: _ClassVar[int]
    REMOTES_FIELD_NUMBER: _ClassVar[int]
    object_ids: _containers.RepeatedScalarFieldContainer[bytes]
    destination: bytes
    recursive: bool
    only_owned: bool
    remotes: bool
    def __init__(self, object_ids: _Optional[_Iterable[bytes]] = ..., destination: _Optional[bytes] = ..., recursive: _Optional[bool] = ..., only_owned: _Optional[bool] = ..., remotes: _Optional[bool] = ...) -> None: ...

class MoveProgress(_message.Message):
    __slots__ = ("objects_total", "objects_sent", "bytes_sent", "done", "moved_ids", "frontier", "seconds")
    OBJECTS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    OBJECTS_SENT_FIELD_NUMBER: _ClassVar[int]
    BYTES_SENT_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    MOVED_IDS_FIELD_NUMBER: _ClassVar[int]
    FRONTIER_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    objects_total: int
    objects_sent: int
    bytes_sent: int
    done: bool
    moved_ids: _containers.RepeatedScalarFieldContainer[bytes]
    frontier: _containers.RepeatedCompositeFieldContainer[ObjectEntry]
    seconds: float
    def __init__(self, objects_total: _Optional[int] = ..., objects_sent: _Optional[int] = ..., bytes_sent: _Optional[int] = ..., done: _Optional[bool] = ..., moved_ids: _Optional[_Iterable[bytes]] = ..., frontier: _Optional[_Iterable[_Union[ObjectEntry, _Mapping]]] = ..., seconds: _Optional[float] = ...) -> None: ...

class TransferChunk(_message.Message):
    __slots__ = ("move_id", "source_backend_id", "objects", "destination_backend_id")
    MOVE_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_BACKEND_ID_FIELD_NUMBER: _ClassVar[int]
    OBJECTS_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_BACKEND_ID_FIELD_NUMBER: _ClassVar[int]
    move_id: bytes
    source_backend_id: bytes
    objects: _containers.RepeatedCompositeFieldContainer[ObjectRecord]
    destination_backend_id: bytes
    def __init__(self, move_id: _Optional[bytes] = ..., source_backend_id: _Optional[bytes] = ..., objects: _Optional[_Iterable[_Union[ObjectRecord, _Mapping]]] = ..., destination_backend_id: _Optional[bytes] = ...) -> None: ...

class MoveId(_message.Message):
    __slots__ = ("move_id",)
    MOVE_ID_FIELD_NUMBER: _ClassVar[int]
    move_id: bytes
    def __init__(self, move_id: _Optional[bytes] = ...) -> None: ...

class CommitMoveRequest(_message.Message):
    __slots__ = ("object_ids", "source_backend_id", "destination_backend_id", "move_id")
    OBJECT_IDS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_BACKEND_ID_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_BACKEND_ID_FIELD_NUMBER: _ClassVar[int]
    MOVE_ID_FIELD_NUMBER: _ClassVar[int]
    object_ids: _containers.RepeatedScalarFieldContainer[bytes]
    source_backend_id: bytes
    destination_backend_id: bytes
    move_id: bytes
    def __init__(self, object_ids: _Optional[_Iterable[bytes]] = ..., source_backend_id: _Optional[bytes] = ..., destination_backend_id: _Optional[bytes] = ..., move_id: _Optional[bytes] = ...) -> None: ...

class NewVersionRequest(_message.Message):
    __slots__ = ("object_id", "destination", "recursive")
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    RECURSIVE_FIELD_NUMBER: _ClassVar[int]
    object_id: bytes
    destination: bytes
    recursive: bool
    def __init__(self, object_id: _Optional[bytes] = ..., destination: _Optional[bytes] = ..., recursive: _Optional[bool] = ...) -> None: ...

class ConsolidateRequest(_message.Message):
    __slots__ = ("object_id", "force", "discard")
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    DISCARD_FIELD_NUMBER: _ClassVar[int]
    object_id: bytes
    force: bool
    discard: bool
    def __init__(self, object_id: _Optional[bytes] = ..., force: _Optional[bool] = ..., discard: _Optional[bool] = ...) -> None: ...

class StageWriteRequest(_message.Message):
    __slots__ = ("txn_id", "object_id", "state", "expected_revision", "force")
    TXN_ID_FIELD_NUMBER: _ClassVar[int]
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_REVISION_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    txn_id: bytes
    object_id: bytes
    state: bytes
    expected_revision: int
    force: bool
    def __init__(self, txn_id: _Optional[bytes] = ..., object_id: _Optional[bytes] = ..., state: _Optional[bytes] = ..., expected_revision: _Optional[int] = ..., force: _Optional[bool] = ...) -> None: ...

class StageWriteReply(_message.Message):
    __slots__ = ("new_revision", "version_parent", "base_revision")
    NEW_REVISION_FIELD_NUMBER: _ClassVar[int]
    VERSION_PARENT_FIELD_NUMBER: _ClassVar[int]
    BASE_REVISION_FIELD_NUMBER: _ClassVar[int]
    new_revision: int
    version_parent: bytes
    base_revision: int
    def __init__(self, new_revision: _Optional[int] = ..., version_parent: _Optional[bytes] = ..., base_revision: _Optional[int] = ...) -> None: ...

class ApplyWritesRequest(_message.Message):
    __slots__ = ("txn_id", "base_revisions")
    class BaseRevisionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    TXN_ID_FIELD_NUMBER: _ClassVar[int]
    BASE_REVISIONS_FIELD_NUMBER: _ClassVar[int]
    txn_id: bytes
    base_revisions: _containers.ScalarMap[str, int]
    def __init__(self, txn_id: _Optional[bytes] = ..., base_revisions: _Optional[_Mapping[str, int]] = ...) -> None: ...

class TransactionRequest(_message.Message):
    __slots__ = ("txn_id", "retire", "base_revisions", "discarded")
    class BaseRevisionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    TXN_ID_FIELD_NUMBER: _ClassVar[int]
    RETIRE_FIELD_NUMBER: _ClassVar[int]
    BASE_REVISIONS_FIELD_NUMBER: _ClassVar[int]
    DISCARDED_FIELD_NUMBER: _ClassVar[int]
    txn_id: bytes
    retire: _containers.RepeatedScalarFieldContainer[bytes]
    base_revisions: _containers.ScalarMap[str, int]
    discarded: bool
    def __init__(self, txn_id: _Optional[bytes] = ..., retire: _Optional[_Iterable[bytes]] = ..., base_revisions: _Optional[_Mapping[str, int]] = ..., discarded: _Optional[bool] = ...) -> None: ...

class TransactionState(_message.Message):
    __slots__ = ("committed", "base_revisions")
    class BaseRevisionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    COMMITTED_FIELD_NUMBER: _ClassVar[int]
    BASE_REVISIONS_FIELD_NUMBER: _ClassVar[int]
    committed: bool
    base_revisions: _containers.ScalarMap[str, int]
    def __init__(self, committed: _Optional[bool] = ..., base_revisions: _Optional[_Mapping[str, int]] = ...) -> None: ...

class NewReplicaRequest(_message.Message):
    __slots__ = ("object_ids", "destination", "recursive")
    OBJECT_IDS_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    RECURSIVE_FIELD_NUMBER: _ClassVar[int]
    object_ids: _containers.RepeatedScalarFieldContainer[bytes]
    destination: bytes
    recursive: bool
    def __init__(self, object_ids: _Optional[_Iterable[bytes]] = ..., destination: _Optional[bytes] = ..., recursive: _Optional[bool] = ...) -> None: ...

class NewReplicaReply(_message.Message):
    __slots__ = ("destination", "replicated_ids", "frontier")
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    REPLICATED_IDS_FIELD_NUMBER: _ClassVar[int]
    FRONTIER_FIELD_NUMBER: _ClassVar[int]
    destination: bytes
    replicated_ids: _containers.RepeatedScalarFieldContainer[bytes]
    frontier: _containers.RepeatedCompositeFieldContainer[ObjectEntry]
    def __init__(self, destination: _Optional[bytes] = ..., replicated_ids: _Optional[_Iterable[bytes]] = ..., frontier: _Optional[_Iterable[_Union[ObjectEntry, _Mapping]]] = ...) -> None: ...

class ReplicaStates(_message.Message):
    __slots__ = ("master_backend_id", "destination_backend_id", "objects")
    MASTER_BACKEND_ID_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_BACKEND_ID_FIELD_NUMBER: _ClassVar[int]
    OBJECTS_FIELD_NUMBER: _ClassVar[int]
    master_backend_id: bytes
    destination_backend_id: bytes
    objects: _containers.RepeatedCompositeFieldContainer[ObjectRecord]
    def __init__(self, master_backend_id: _Optional[bytes] = ..., destination_backend_id: _Optional[bytes] = ..., objects: _Optional[_Iterable[_Union[ObjectRecord, _Mapping]]] = ...) -> None: ...

class ReplicaReadRequest(_message.Message):
    __slots__ = ("object_id", "name")
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    object_id: bytes
    name: str
    def __init__(self, object_id: _Optional[bytes] = ..., name: _Optional[str] = ...) -> None: ...

class ReplicaChange(_message.Message):
    __slots__ = ("object_ids", "backend_id")
    OBJECT_IDS_FIELD_NUMBER: _ClassVar[int]
    BACKEND_ID_FIELD_NUMBER: _ClassVar[int]
    object_ids: _containers.RepeatedScalarFieldContainer[bytes]
    backend_id: bytes
    def __init__(self, object_ids: _Optional[_Iterable[bytes]] = ..., backend_id: _Optional[bytes] = ...) -> None: ...

class ReplicasRequest(_message.Message):
    __slots__ = ("holder", "master")
    HOLDER_FIELD_NUMBER: _ClassVar[int]
    MASTER_FIELD_NUMBER: _ClassVar[int]
    holder: bytes
    master: bytes
    def __init__(self, holder: _Optional[bytes] = ..., master: _Optional[bytes] = ...) -> None: ...

class ReplicaEntry(_message.Message):
    __slots__ = ("object_id", "backend_id", "master_backend_id")
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    BACKEND_ID_FIELD_NUMBER: _ClassVar[int]
    MASTER_BACKEND_ID_FIELD_NUMBER: _ClassVar[int]
    object_id: bytes
    backend_id: bytes
    master_backend_id: bytes
    def __init__(self, object_id: _Optional[bytes] = ..., backend_id: _Optional[bytes] = ..., master_backend_id: _Optional[bytes] = ...) -> None: ...

class ReplicaList(_message.Message):
    __slots__ = ("replicas",)
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    replicas: _containers.RepeatedCompositeFieldContainer[ReplicaEntry]
    def __init__(self, replicas: _Optional[_Iterable[_Union[ReplicaEntry, _Mapping]]] = ...) -> None: ...

class ReleaseReplicasRequest(_message.Message):
    __slots__ = ("backend_id", "object_ids", "rehome")
    BACKEND_ID_FIELD_NUMBER: _ClassVar[int]
    OBJECT_IDS_FIELD_NUMBER: _ClassVar[int]
    REHOME_FIELD_NUMBER: _ClassVar[int]
    backend_id: bytes
    object_ids: _containers.RepeatedScalarFieldContainer[bytes]
    rehome: bool
    def __init__(self, backend_id: _Optional[bytes] = ..., object_ids: _Optional[_Iterable[bytes]] = ..., rehome: _Optional[bool] = ...) -> None: ...

class BackendInfo(_message.Message):
    __slots__ = ("backend_id", "name", "host", "port", "draining")
    BACKEND_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    DRAINING_FIELD_NUMBER: _ClassVar[int]
    backend_id: bytes
    name: str
    host: str
    port: int
    draining: bool
    def __init__(self, backend_id: _Optional[bytes] = ..., name: _Optional[str] = ..., host: _Optional[str] = ..., port: _Optional[int] = ..., draining: _Optional[bool] = ...) -> None: ...

class BackendList(_message.Message):
    __slots__ = ("backends", "cluster_id", "restored")
    BACKENDS_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    RESTORED_FIELD_NUMBER: _ClassVar[int]
    backends: _containers.RepeatedCompositeFieldContainer[BackendInfo]
    cluster_id: bytes
    restored: bool
    def __init__(self, backends: _Optional[_Iterable[_Union[BackendInfo, _Mapping]]] = ..., cluster_id: _Optional[bytes] = ..., restored: _Optional[bool] = ...) -> None: ...

class CreateObjectRequest(_message.Message):
    __slots__ = ("class_path", "payload")
    CLASS_PATH_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    class_path: str
    payload: bytes
    def __init__(self, class_path: _Optional[str] = ..., payload: _Optional[bytes] = ...) -> None: ...

class ClassInfoRequest(_message.Message):
    __slots__ = ("class_path",)
    CLASS_PATH_FIELD_NUMBER: _ClassVar[int]
    class_path: str
    def __init__(self, class_path: _Optional[str] = ...) -> None: ...

class ClassInfo(_message.Message):
    __slots__ = ("properties", "active_methods")
    PROPERTIES_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_METHODS_FIELD_NUMBER: _ClassVar[int]
    properties: _containers.RepeatedScalarFieldContainer[str]
    active_methods: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, properties: _Optional[_Iterable[str]] = ..., active_methods: _Optional[_Iterable[str]] = ...) -> None: ...

class ObjectEntry(_message.Message):
    __slots__ = ("object_id", "class_path", "backend_id", "version_parent", "version_original", "replica_backend_ids", "retired")
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    CLASS_PATH_FIELD_NUMBER: _ClassVar[int]
    BACKEND_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_PARENT_FIELD_NUMBER: _ClassVar[int]
    VERSION_ORIGINAL_FIELD_NUMBER: _ClassVar[int]
    REPLICA_BACKEND_IDS_FIELD_NUMBER: _ClassVar[int]
    RETIRED_FIELD_NUMBER: _ClassVar[int]
    object_id: bytes
    class_path: str
    backend_id: bytes
    version_parent: bytes
    version_original: bytes
    replica_backend_ids: _containers.RepeatedScalarFieldContainer[bytes]
    retired: Retired
    def __init__(self, object_id: _Optional[bytes] = ..., class_path: _Optional[str] = ..., backend_id: _Optional[bytes] = ..., version_parent: _Optional[bytes] = ..., version_original: _Optional[bytes] = ..., replica_backend_ids: _Optional[_Iterable[bytes]] = ..., retired: _Optional[_Union[Retired, str]] = ...) -> None: ...

class RegisterObjectsRequest(_message.Message):
    __slots__ = ("objects", "alias", "stored")
    OBJECTS_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    STORED_FIELD_NUMBER: _ClassVar[int]
    objects: _containers.RepeatedCompositeFieldContainer[ObjectEntry]
    alias: str
    stored: bool
    def __init__(self, objects: _Optional[_Iterable[_Union[ObjectEntry, _Mapping]]] = ..., alias: _Optional[str] = ..., stored: _Optional[bool] = ...) -> None: ...

class RegisterObjectsReply(_message.Message):
    __slots__ = ("refused",)
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    refused: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, refused: _Optional[_Iterable[bytes]] = ...) -> None: ...

class FlushRegistrationsRequest(_message.Message):
    __slots__ = ("before_drain",)
    BEFORE_DRAIN_FIELD_NUMBER: _ClassVar[int]
    before_drain: bool
    def __init__(self, before_drain: _Optional[bool] = ...) -> None: ...

class AliasRequest(_message.Message):
    __slots__ = ("alias", "object_id")
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    alias: str
    object_id: bytes
    def __init__(self, alias: _Optional[str] = ..., object_id: _Optional[bytes] = ...) -> None: ...

class AliasList(_message.Message):
    __slots__ = ("aliases",)
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    aliases: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, aliases: _Optional[_Iterable[str]] = ...) -> None: ...

class ObjectIdList(_message.Message):
    __slots__ = ("object_ids",)
    OBJECT_IDS_FIELD_NUMBER: _ClassVar[int]
    object_ids: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, object_ids: _Optional[_Iterable[bytes]] = ...) -> None: ...

class BackendRequest(_message.Message):
    __slots__ = ("backend_id", "draining")
    BACKEND_ID_FIELD_NUMBER: _ClassVar[int]
    DRAINING_FIELD_NUMBER: _ClassVar[int]
    backend_id: bytes
    draining: bool
    def __init__(self, backend_id: _Optional[bytes] = ..., draining: _Optional[bool] = ...) -> None: ...

class OwnedObjectsRequest(_message.Message):
    __slots__ = ("backend_id", "after")
    BACKEND_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    backend_id: bytes
    after: bytes
    def __init__(self, backend_id: _Optional[bytes] = ..., after: _Optional[bytes] = ...) -> None: ...

class OwnedObjectsPage(_message.Message):
    __slots__ = ("object_ids", "more")
    OBJECT_IDS_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    object_ids: _containers.RepeatedScalarFieldContainer[bytes]
    more: bool
    def __init__(self, object_ids: _Optional[_Iterable[bytes]] = ..., more: _Optional[bool] = ...) -> None: ...

class BackupInfo(_message.Message):
    __slots__ = ("path", "time", "size", "backends", "objects", "aliases", "error")
    PATH_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    BACKENDS_FIELD_NUMBER: _ClassVar[int]
    OBJECTS_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    path: str
    time: float
    size: int
    backends: int
    objects: int
    aliases: int
    error: str
    def __init__(self, path: _Optional[str] = ..., time: _Optional[float] = ..., size: _Optional[int] = ..., backends: _Optional[int] = ..., objects: _Optional[int] = ..., aliases: _Optional[int] = ..., error: _Optional[str] = ...) -> None: ...

class ReconcileRequest(_message.Message):
    __slots__ = ("backend_id", "held", "not_held", "done")
    BACKEND_ID_FIELD_NUMBER: _ClassVar[int]
    HELD_FIELD_NUMBER: _ClassVar[int]
    NOT_HELD_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    backend_id: bytes
    held: _containers.RepeatedCompositeFieldContainer[ObjectEntry]
    not_held: _containers.RepeatedScalarFieldContainer[bytes]
    done: bool
    def __init__(self, backend_id: _Optional[bytes] = ..., held: _Optional[_Iterable[_Union[ObjectEntry, _Mapping]]] = ..., not_held: _Optional[_Iterable[bytes]] = ..., done: _Optional[bool] = ...) -> None: ...

class ReconcileReply(_message.Message):
    __slots__ = ("refused", "adopted", "reassigned", "restore_ended")
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    ADOPTED_FIELD_NUMBER: _ClassVar[int]
    REASSIGNED_FIELD_NUMBER: _ClassVar[int]
    RESTORE_ENDED_FIELD_NUMBER: _ClassVar[int]
    refused: _containers.RepeatedScalarFieldContainer[bytes]
    adopted: int
    reassigned: int
    restore_ended: bool
    def __init__(self, refused: _Optional[_Iterable[bytes]] = ..., adopted: _Optional[int] = ..., reassigned: _Optional[int] = ..., restore_ended: _Optional[bool] = ...) -> None: ...
