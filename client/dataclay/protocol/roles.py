"""Who may call each RPC: the authorization table of the wire contract (dataclay.proto says the
same beside each rpc, as `[callers: ...]`; tests/unit/client/test_roles.py checks that they
agree and that every rpc has an entry).

Roles are the callers' certificate identities (dataclay.security): `client` (users and
applications), `backend` (a named backend: it also acts as a client, running active methods that
call other objects), `admin` (drains). The metadata service serves only. A server enforces the
table before any handler runs (dataclay_backend.grpc_server); an RPC missing here is refused to
everyone. Internal calls are also bound to the caller's identity where the request names a
backend or objects (dataclay_backend.metadata_service): a backend registers only its own name and
id, registers, drops and retires only objects it owns, commits only moves it is the source of,
lists only its own objects, records and drops replicas only of objects it owns, and lists only
the replicas it holds or masters.
"""
from __future__ import annotations

CLIENT, BACKEND, ADMIN = "client", "backend", "admin"

ANYONE = frozenset({CLIENT, BACKEND, ADMIN})  # every authenticated caller
INTERNAL = frozenset({BACKEND})               # only backends, among themselves and to the metadata service
ADMIN_ONLY = frozenset({ADMIN})
BACKEND_OR_ADMIN = frozenset({BACKEND, ADMIN})

ROLES: dict[str, dict[str, frozenset[str]]] = {
    "Backend": {
        "StoreObjects": ANYONE,
        "StoreRawObject": ANYONE,
        "GetAttribute": ANYONE,
        "SetAttribute": ANYONE,
        "SetRawAttribute": ANYONE,
        "CallActiveMethod": ANYONE,
        "GetObjectState": ANYONE,
        "UpdateObject": ANYONE,
        "Stats": ANYONE,
        "GetClassInfo": ANYONE,
        "CreateObject": ANYONE,
        "Move": ANYONE,                       # a client's move(), and the admin's drains
        "ReceiveObjects": INTERNAL,           # the destination side of a move
        "ActivateMove": INTERNAL,
        "AbortMove": INTERNAL,
        "NewVersion": ANYONE,
        "ConsolidateVersion": ANYONE,
        "StageWrite": INTERNAL,               # a consolidation's participants
        "ApplyWrites": INTERNAL,
        "AbortWrites": INTERNAL,
        "NewReplica": ANYONE,
        "StoreReplicas": INTERNAL,            # a master to its replica holders
        "ReadReplica": ANYONE,                # a fallback read
        "ForgetReplicas": INTERNAL,
        "ReleaseReplicas": ADMIN_ONLY,        # drains
        "FlushRegistrations": ANYONE,         # before_drain only makes it register before replying
    },
    "Metadata": {
        "RegisterBackend": INTERNAL,          # bound: its own name
        "ListBackends": ANYONE,
        "RegisterObjects": INTERNAL,          # bound: objects it owns
        "LocateObject": ANYONE,
        "LookupAlias": ANYONE,
        "AddAlias": ANYONE,
        "DeleteAlias": ANYONE,
        "GetAliases": ANYONE,
        "ListOwnedObjects": ANYONE,           # a read, as LocateObject; bound for a backend: its own
        "SetDraining": ADMIN_ONLY,
        "DeregisterBackend": ADMIN_ONLY,
        "DropObjects": INTERNAL,              # bound: rows it owns
        "CommitMove": INTERNAL,               # bound: moves it is the source of
        "CommitTransaction": INTERNAL,        # bound: retires only versions it owns
        "ResolveTransaction": INTERNAL,
        "Backup": ADMIN_ONLY,
        "LastBackup": ADMIN_ONLY,
        "ReconcileObjects": INTERNAL,         # bound: its own id, after a restore
        "AddReplicas": INTERNAL,              # bound: objects it owns
        "DropReplicas": BACKEND_OR_ADMIN,     # bound for a backend: objects it owns
        "ListReplicas": BACKEND_OR_ADMIN,     # bound for a backend: replicas it holds or masters
    },
    # The standard health service: any authenticated caller (and probes on an --insecure server).
    "grpc.health.v1.Health": {"Check": ANYONE, "Watch": ANYONE},
}

# By the full method name gRPC servers see: "/dataclay.v1.Backend/GetAttribute".
BY_METHOD: dict[str, frozenset[str]] = {
    f"/{service if '.' in service else 'dataclay.v1.' + service}/{method}": roles
    for service, methods in ROLES.items() for method, roles in methods.items()
}
