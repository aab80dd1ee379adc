"""Who may call: mutual TLS identities, the credentials directory, and typed refusals.

Every server (metadata service, backends) serves TLS only and requires a client certificate
signed by the cluster's CA (grpcio's own credentials: `grpc.ssl_server_credentials(...,
require_client_auth=True)`; no hand-made crypto). The caller's identity is its certificate's
subject common name, `ROLE` or `ROLE:NAME`:

- `client`: a user's or application's client;
- `admin`: the administrator (drains, `SetDraining`);
- `backend:NAME`: the backend named NAME (it also calls other backends and the metadata service);
- `metadata`: the metadata service (serves only).

What each role may call is one table next to the wire contract (`dataclay.protocol.ROLES`).

A credentials directory (0700; every file 0600) holds `ca.pem` (and `ca.key`, to make more
identities), and per identity `STEM.pem` + `STEM.key` where STEM is the common name with ':'
made '.' (`client`, `admin`, `metadata`, `backend.backend-0`). `dataclay up` makes one in its
data directory (DATA_DIR/credentials); a client elsewhere needs `ca.pem`, `client.pem` and
`client.key` copied from it. Certificates of servers name 127.0.0.1, ::1 and localhost (and the
cluster's host) as their addresses; clients verify them.

Clients find the directory by `Client(credentials=DIR)`, else DC_CREDENTIALS, else
./dataclay-data/credentials (the default data directory of `dataclay up`) if it exists; with
none, or with DC_INSECURE=1, they connect in plain text (which a secure cluster refuses).
"""
from __future__ import annotations

import datetime
import fcntl
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import grpc

from dataclay.exceptions import DataClayException

CLIENT, BACKEND, ADMIN, METADATA = "client", "backend", "admin", "metadata"
CA_FILE, CA_KEY_FILE = "ca.pem", "ca.key"
DEFAULT_DIR = Path("dataclay-data") / "credentials"  # of `dataclay up` run here with its default --data-dir
VALID_DAYS = 3650


class PermissionDeniedError(DataClayException):
    """The caller is authenticated but its role may not make this call, or not on this object
    or backend (an internal call bound to another backend's identity)."""

    grpc_code = grpc.StatusCode.PERMISSION_DENIED


class UnauthenticatedError(DataClayException):
    """The call carried no identity the server accepts (no client certificate)."""

    grpc_code = grpc.StatusCode.UNAUTHENTICATED


class CredentialsError(DataClayException):
    """A credentials directory is missing or lacks a file (the message says which)."""


@dataclass(frozen=True)
class Identity:
    role: str
    name: str = ""

    @classmethod
    def parse(cls, common_name: str) -> "Identity":
        role, _, name = common_name.partition(":")
        return cls(role, name)

    @classmethod
    def backend(cls, name: str) -> "Identity":
        return cls(BACKEND, name)

    def __str__(self) -> str:
        return f"{self.role}:{self.name}" if self.name else self.role

    @property
    def stem(self) -> str:
        """File name of its certificate and key, without the extension."""
        return str(self).replace(":", ".")

    @property
    def is_server(self) -> bool:
        return self.role in (BACKEND, METADATA)


def insecure_requested(environ: Any = None) -> bool:
    env = os.environ if environ is None else environ
    return (env.get("DC_INSECURE") or "").strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Credentials:
    """One identity's certificate and key, and the CA that signs the cluster's certificates."""

    identity: Identity
    ca: bytes
    cert: bytes
    key: bytes
    directory: Path | None = None

    @classmethod
    def load(cls, directory: str | Path, identity: Identity | str = CLIENT) -> "Credentials":
        directory = Path(directory)
        identity = identity if isinstance(identity, Identity) else Identity.parse(identity)
        files = [directory / CA_FILE, directory / f"{identity.stem}.pem", directory / f"{identity.stem}.key"]
        missing = [str(path) for path in files if not path.is_file()]
        if missing:
            raise CredentialsError(f"no credentials of {identity} in {directory} (missing {', '.join(missing)}); "
                                   "`dataclay up` makes them in DATA_DIR/credentials")
        ca, cert, key = (path.read_bytes() for path in files)
        return cls(identity, ca, cert, key, directory)

    def channel_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(root_certificates=self.ca, private_key=self.key, certificate_chain=self.cert)

    def server_credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials([(self.key, self.cert)], root_certificates=self.ca, require_client_auth=True)


def find_directory(credentials: str | Path | None = None, environ: Any = None) -> Path | None:
    """The credentials directory a client uses: the one given, else DC_CREDENTIALS, else
    ./dataclay-data/credentials if it exists; None (plain text) with DC_INSECURE=1 or none found."""
    env = os.environ if environ is None else environ
    if credentials is not None:
        return Path(credentials)
    if insecure_requested(env):
        return None
    if env.get("DC_CREDENTIALS"):
        return Path(env["DC_CREDENTIALS"])
    return DEFAULT_DIR.resolve() if (DEFAULT_DIR / CA_FILE).is_file() else None


def client_credentials(credentials: "str | Path | Credentials | None" = None,
                       identity: Identity | str = CLIENT) -> Credentials | None:
    """Credentials of `identity` (default: a client) found as find_directory says, or None."""
    if isinstance(credentials, Credentials):
        return credentials
    directory = find_directory(credentials)
    return None if directory is None else Credentials.load(directory, identity)


def open_channel(address: str, credentials: Credentials | None, options: Iterable[tuple[str, Any]] = (),
                 aio: bool = False) -> Any:
    """A blocking (or grpc.aio) channel to address: TLS with this identity, or plain text."""
    grpc_module: Any = grpc.aio if aio else grpc
    options = list(options)
    if credentials is None:
        return grpc_module.insecure_channel(address, options=options)
    return grpc_module.secure_channel(address, credentials.channel_credentials(), options=options)


_PARSED: dict[bytes, Identity] = {}  # common name -> its Identity (a pure function of the name)
_MAX_PARSED = 1024


def peer_identity(context: grpc.ServicerContext) -> Identity | None:
    """The caller's identity from its verified certificate (None on a plain-text server).

    Read from this call's own auth context every time: nothing is remembered per connection or
    peer address (an address is reused by other callers once a connection closes). Only the
    parsing of a common name is remembered, by the name itself."""
    names = context.auth_context().get("x509_common_name")
    if not names:
        return None
    identity = _PARSED.get(names[0])
    if identity is None:
        if len(_PARSED) >= _MAX_PARSED:  # certificates are the CA's only, but bound it anyway
            _PARSED.clear()
        identity = _PARSED[names[0]] = Identity.parse(names[0].decode())
    return identity


# ------------------------------------------------------------------------ making credentials
def _write_private(path: Path, data: bytes) -> None:
    """Write a file only its owner can read, atomically (a temporary file renamed)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)


def create(directory: str | Path, identities: Iterable[Identity | str], hosts: Iterable[str] = ()) -> Path:
    """Make (or complete) a credentials directory: the CA if it has none, and each identity that
    has no certificate yet (`new_ca` and `issue`, written as files). The directory is 0700, every
    file 0600. Servers' certificates name localhost, 127.0.0.1, ::1 and `hosts`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    server_hosts = ["localhost", "127.0.0.1", "::1", *hosts]
    lock = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two processes completing one directory: one at a time
        if not (directory / CA_FILE).is_file() or not (directory / CA_KEY_FILE).is_file():
            ca_pem, ca_key_pem = new_ca()
            _write_private(directory / CA_KEY_FILE, ca_key_pem)
            _write_private(directory / CA_FILE, ca_pem)
            for stale in directory.glob("*.pem"):  # signed by a CA that is gone
                if stale.name != CA_FILE:
                    stale.unlink()
        ca_pem, ca_key_pem = (directory / CA_FILE).read_bytes(), (directory / CA_KEY_FILE).read_bytes()
        for identity in identities:
            identity = identity if isinstance(identity, Identity) else Identity.parse(identity)
            cert_path, key_path = directory / f"{identity.stem}.pem", directory / f"{identity.stem}.key"
            if cert_path.is_file() and key_path.is_file():
                continue
            cert, key = issue(ca_pem, ca_key_pem, identity, server_hosts)
            _write_private(key_path, key)
            _write_private(cert_path, cert)
    finally:
        os.close(lock)
    return directory


# ------------------------------------------------------------ making credentials in memory
# Certificates as PEM bytes: `create` writes them as files; the Kubernetes operator keeps them in
# Secrets (dataclay_operator.credentials), where no directory exists to write into.
def _x509_name(common_name: str) -> Any:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "dataclay"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem_key(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def new_ca(days: int = VALID_DAYS) -> tuple[bytes, bytes]:
    """A new CA as (ca.pem, ca.key) PEM bytes: P-256, valid `days`, may sign leaves only."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    now = datetime.datetime.now(datetime.timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = _x509_name(f"dataclay CA {os.urandom(4).hex()}")
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)


def issue(ca_cert: bytes, ca_key: bytes, identity: Identity | str, hosts: Iterable[str] = (),
          days: int = VALID_DAYS) -> tuple[bytes, bytes]:
    """A certificate and key (PEM bytes) of `identity` signed by the CA. A server's (backend,
    metadata) names exactly `hosts` (DNS names or IP addresses) and may serve; every identity
    may authenticate as a client."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID

    identity = identity if isinstance(identity, Identity) else Identity.parse(identity)
    signer = serialization.load_pem_private_key(ca_key, None)
    issuer = x509.load_pem_x509_certificate(ca_cert)
    now = datetime.datetime.now(datetime.timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    builder = (x509.CertificateBuilder().subject_name(_x509_name(str(identity))).issuer_name(issuer.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True))
    if identity.is_server:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                name: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host.strip("[]")))
            except ValueError:
                name = x509.DNSName(host)
            if name not in names:
                names.append(name)
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    cert = builder.sign(signer, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)
