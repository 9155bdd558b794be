"""The service's own certificate authority, for the egress proxy's TLS termination.

The proxy ends a sandbox's TLS to a host it holds a credential for, with a leaf for that host
that this CA signs; the sandbox trusts the CA through a bundle it is given. It must never put
the CA's private key anywhere but its 0600 file in the service's directory (never in a bundle,
never in a sandbox), and never issue a leaf that may itself sign certificates.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import ipaddress
import os
import socket
import ssl
import tempfile
import threading
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SYSTEM_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
CA_LIFETIME = datetime.timedelta(days=3650)
LEAF_LIFETIME = datetime.timedelta(days=30)
_RENEW_BEFORE = datetime.timedelta(days=1)  # a cached leaf this close to its end is reissued
_BACKDATE = datetime.timedelta(hours=1)  # a sandbox clock a little behind still accepts it


class ServiceCA:
    """A self-signed CA (EC P-256, CA:true, pathlen 0) kept as ca.pem and ca.key."""

    def __init__(
        self, directory: Path, certificate: x509.Certificate, key: ec.EllipticCurvePrivateKey
    ) -> None:
        self.directory = directory
        self.certificate = certificate
        self._key = key
        self._leaf_key = ec.generate_private_key(ec.SECP256R1())
        self._leaves: dict[str, tuple[datetime.datetime, ssl.SSLContext]] = {}
        self._lock = threading.Lock()

    @classmethod
    def load_or_create(cls, directory: Path) -> ServiceCA:
        """The CA kept in directory, made there first if there is none. Two processes that
        race here end with the same CA: the first to take the lock makes it."""
        directory = Path(directory)
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
        with open(directory / ".lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            cert_path, key_path = directory / "ca.pem", directory / "ca.key"
            if not (cert_path.exists() and key_path.exists()):
                certificate, key = _new_ca()
                key_pem = key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
                # The key first: a ca.pem without its key would be a CA nobody can use.
                _write_atomically(key_path, key_pem, 0o600)
                _write_atomically(
                    cert_path, certificate.public_bytes(serialization.Encoding.PEM), 0o644
                )
            certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{key_path} is not an EC private key")
        return cls(directory, certificate, key)

    @property
    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def leaf_context(self, host: str) -> ssl.SSLContext:
        """A TLS server context presenting a leaf for host (an IP SAN for an address, a DNS
        SAN otherwise), issued once per host and reused until a day before it ends."""
        host = host.lower().rstrip(".")
        now = datetime.datetime.now(datetime.UTC)
        with self._lock:
            cached = self._leaves.get(host)
            if cached is not None and cached[0] - _RENEW_BEFORE > now:
                return cached[1]
            expires = now + LEAF_LIFETIME
            context = self._new_leaf_context(host, now, expires)
            self._leaves[host] = (expires, context)
            return context

    def bundle(self, path: Path) -> Path:
        """Write the PEM bundle a sandbox trusts: the system's CAs, SSL_CERT_FILE's when it is
        set, and this CA's certificate (never its key). Written whole or not at all."""
        parts: list[bytes] = []
        extra = os.environ.get("SSL_CERT_FILE")
        for source in (SYSTEM_BUNDLE, Path(extra) if extra else None):
            if source is not None and source.is_file():
                text = source.read_bytes()
                parts.append(text if text.endswith(b"\n") else text + b"\n")
        parts.append(self.certificate_pem)
        _write_atomically(Path(path), b"".join(parts), 0o644)
        return Path(path)

    def _new_leaf_context(
        self, host: str, now: datetime.datetime, expires: datetime.datetime
    ) -> ssl.SSLContext:
        try:
            name: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
        except ValueError:
            name = x509.DNSName(host)
        ca_key_id = x509.SubjectKeyIdentifier.from_public_key(self._key.public_key())
        leaf = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host[:64])]))
            .issuer_name(self.certificate.subject)
            .public_key(self._leaf_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(expires)
            .add_extension(x509.SubjectAlternativeName([name]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(digital_signature=True), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self._leaf_key.public_key()), False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_key_id), False
            )
            .sign(self._key, hashes.SHA256())
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.set_alpn_protocols(["http/1.1"])  # the proxy reads one HTTP/1.1 request
        pem = leaf.public_bytes(serialization.Encoding.PEM) + self._leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        # load_cert_chain reads only files: one in the CA's private directory, gone at once.
        with tempfile.NamedTemporaryFile(dir=self.directory, prefix=".leaf-", suffix=".pem") as f:
            f.write(pem)
            f.flush()
            context.load_cert_chain(f.name)
        return context


def _new_ca() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "agent-control-plane"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"acp egress CA ({socket.gethostname()[:32]})"),
        ]
    )
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    return certificate, key


def _key_usage(
    *, digital_signature: bool = False, key_cert_sign: bool = False, crl_sign: bool = False
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise


__all__ = ["ServiceCA"]
