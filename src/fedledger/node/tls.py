"""A node's TLS identity: a self-signed certificate pinned on chain by its SHA-256 fingerprint.

There is no certificate authority: each node makes its own key pair and certificate, and publishes
the SHA-256 of the certificate's DER encoding in the registry (`Ledger.set_endpoint`). A peer is
trusted exactly when the certificate it presents hashes to the fingerprint the chain has for the
address it claims, so the chain is the PKI of the transport as it is of secure aggregation.

Keys are ECDSA P-256 (every TLS stack gRPC may link accepts them). The private scalar comes from
the OS CSPRNG: 384 random bits reduced mod n-1, plus 1 (FIPS 186-5 appendix A.2.1, "key pair
generation using extra random bits": the bias is below 2^-128).
"""

from __future__ import annotations

import datetime
import hashlib
import os
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fedledger.core.errors import IntegrityError
from fedledger.protocol.transport import TransportError

# the name every node certificate carries and every client checks (with `grpc.ssl_target_name_override`):
# identity is the pinned fingerprint, not a host name, so one fixed name that no public CA would issue
TLS_NAME = "node.fedledger.invalid"
VALIDITY = datetime.timedelta(days=3650)  # rotation is a new fingerprint on chain, not an expiry
# the order n of the P-256 group (SEC 2 v2, section 2.4.2)
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
KEY_FILE = "tls-key.pem"
CERT_FILE = "tls-cert.pem"


def fingerprint(cert_der: bytes) -> bytes:
    """The SHA-256 of a certificate's DER encoding: what the registry pins."""
    return hashlib.sha256(cert_der).digest()


def pem_to_der(cert_pem: bytes) -> bytes:
    return x509.load_pem_x509_certificate(cert_pem).public_bytes(serialization.Encoding.DER)


def der_to_pem(cert_der: bytes) -> bytes:
    return x509.load_der_x509_certificate(cert_der).public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class NodeIdentity:
    """A node's TLS key and self-signed certificate (PEM), used as its server and its client certificate."""

    key_pem: bytes
    cert_pem: bytes

    @property
    def cert_der(self) -> bytes:
        return pem_to_der(self.cert_pem)

    @property
    def fingerprint(self) -> bytes:
        return fingerprint(self.cert_der)

    @classmethod
    def generate(cls, address: str, *, now: datetime.datetime | None = None) -> NodeIdentity:
        """A fresh key from the OS CSPRNG and a self-signed certificate naming `address` (informational only)."""
        scalar = int.from_bytes(os.urandom(48), "big") % (P256_ORDER - 1) + 1
        key = ec.derive_private_key(scalar, ec.SECP256R1())
        now = now or datetime.datetime.now(datetime.UTC)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"fedledger node {address}"[:64])])
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(int.from_bytes(os.urandom(16), "big") >> 1 or 1)
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(TLS_NAME)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return cls(key_pem=key_pem, cert_pem=cert.public_bytes(serialization.Encoding.PEM))

    def save(self, directory: Path | str, password: bytes | None = None) -> None:
        """Write the certificate and the key (mode 0600; encrypted under `password` when given)."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        key = serialization.load_pem_private_key(self.key_pem, None)
        enc = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
        data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)
        path = d / KEY_FILE
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        (d / CERT_FILE).write_bytes(self.cert_pem)

    @classmethod
    def load(cls, directory: Path | str, password: bytes | None = None) -> NodeIdentity:
        d = Path(directory)
        try:
            key = serialization.load_pem_private_key((d / KEY_FILE).read_bytes(), password)
            cert_pem = (d / CERT_FILE).read_bytes()
        except (OSError, ValueError, TypeError) as e:
            raise IntegrityError(f"cannot load the node's TLS identity from {d}: {e}") from None
        cert = x509.load_pem_x509_certificate(cert_pem)
        if cert.public_key().public_numbers() != key.public_key().public_numbers():  # type: ignore[union-attr]
            raise IntegrityError(f"the TLS key in {d} does not match its certificate")
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return cls(key_pem=key_pem, cert_pem=cert_pem)


def split_url(url: str) -> tuple[str, int]:
    host, sep, port = url.rpartition(":")
    if not sep or not port.isdigit():
        raise TransportError(f"an endpoint is host:port, not {url!r}")
    return host.strip("[]"), int(port)


def probe_certificate(url: str, timeout: float = 2.0) -> bytes:
    """The DER certificate the TLS server at `url` presents (unverified: the caller pins it by fingerprint).

    TLS 1.3 only: the server's certificate arrives in its first flight, so the handshake completes on our
    side even though a gRPC server then refuses us for presenting no client certificate."""
    host, port = split_url(url)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the fingerprint check below is the verification
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.set_alpn_protocols(["h2"])
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as sock,
            ctx.wrap_socket(sock, server_hostname=TLS_NAME) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError) as e:
        raise TransportError(f"cannot reach {url} for its TLS certificate: {e}") from None
    if not der:
        raise TransportError(f"{url} presented no TLS certificate")
    return der
