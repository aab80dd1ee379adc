"""The authorization table (dataclay.protocol.roles) covers every rpc of dataclay.proto, and the
proto's `[callers: ...]` comments say the same; credentials files are private."""
from __future__ import annotations

import re
import stat
from pathlib import Path

import grpc

from dataclay.protocol.roles import ADMIN, ANYONE, BACKEND, BY_METHOD, CLIENT, ROLES
from dataclay.security import Credentials, Identity, create

PROTO = Path(__file__).resolve().parents[3] / "client" / "dataclay" / "protocol" / "dataclay.proto"


def _proto_rpcs() -> dict[str, dict[str, str]]:
    services: dict[str, dict[str, str]] = {}
    for service, body in re.findall(r"service (\w+) \{(.*?)\n\}", PROTO.read_text(), re.S):
        services[service] = dict((name, callers) for callers, name in
                                 re.findall(r"// \[callers: ([^\]]*)\]\n(?:\s*//[^\n]*\n)*\s*rpc (\w+)\(", body))
        assert len(services[service]) == len(re.findall(r"\brpc \w+\(", body)), f"an rpc of {service} has no [callers]"
    return services


def test_every_rpc_has_a_role_and_the_proto_says_the_same():
    proto = _proto_rpcs()
    assert set(proto) == {"Backend", "Metadata"}
    for service, rpcs in proto.items():
        assert set(rpcs) == set(ROLES[service]), f"{service}: the table and dataclay.proto list different rpcs"
        for name, callers in rpcs.items():
            said = ANYONE if callers == "anyone" else frozenset(part.strip() for part in callers.split(","))
            assert said == ROLES[service][name], f"{service}.{name}: proto says {callers}"


def test_internal_calls_are_for_backends_and_drains_for_the_admin():
    for name in ("RegisterObjects", "DropObjects", "CommitMove", "CommitTransaction", "RegisterBackend",
                 "ResolveTransaction"):
        assert ROLES["Metadata"][name] == {BACKEND}, name
    for name in ("ReceiveObjects", "ActivateMove", "AbortMove", "StageWrite", "ApplyWrites", "AbortWrites"):
        assert ROLES["Backend"][name] == {BACKEND}, name
    assert ROLES["Metadata"]["SetDraining"] == {ADMIN}
    assert CLIENT in ROLES["Metadata"]["ListOwnedObjects"]  # a read, as LocateObject
    assert BY_METHOD["/dataclay.v1.Backend/GetAttribute"] == ANYONE


def test_credentials_are_private_and_name_their_identity(tmp_path):
    from cryptography import x509

    directory = create(tmp_path / "credentials", ["client", "backend:backend-0"], hosts=["10.0.0.7"])
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    files = [path for path in directory.iterdir() if not path.name.startswith(".")]
    assert {path.name for path in files} >= {"ca.pem", "ca.key", "client.pem", "client.key",
                                             "backend.backend-0.pem", "backend.backend-0.key"}
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    backend = Credentials.load(directory, "backend:backend-0")
    cert = x509.load_pem_x509_certificate(backend.cert)
    assert cert.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)[0].value == "backend:backend-0"
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in sans.get_values_for_type(x509.DNSName)
    assert {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)} >= {"127.0.0.1", "10.0.0.7"}
    assert Identity.parse("backend:backend-0") == Identity.backend("backend-0")
    before = (directory / "client.pem").read_bytes()
    create(directory, ["client", "admin"])  # completes, never replaces
    assert (directory / "client.pem").read_bytes() == before and (directory / "admin.pem").is_file()
    assert isinstance(Credentials.load(directory).channel_credentials(), grpc.ChannelCredentials)
