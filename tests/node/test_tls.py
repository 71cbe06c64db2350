"""A node's TLS identity: fresh keys, the fingerprint the registry pins, the key file at rest."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from fedledger.core.errors import IntegrityError
from fedledger.node.tls import CERT_FILE, KEY_FILE, TLS_NAME, NodeIdentity


def test_fingerprint_is_the_sha256_of_the_der_certificate() -> None:
    ident = NodeIdentity.generate("0x" + "ab" * 20)
    cert = x509.load_pem_x509_certificate(ident.cert_pem)
    assert ident.fingerprint == hashlib.sha256(ident.cert_der).digest() == cert.fingerprint(hashes.SHA256())
    assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName
    ) == [TLS_NAME]


def test_every_identity_has_a_fresh_key() -> None:
    a, b = NodeIdentity.generate("0x1"), NodeIdentity.generate("0x1")
    assert a.key_pem != b.key_pem and a.fingerprint != b.fingerprint


def test_the_key_is_private_and_encrypted_at_rest(tmp_path: Path) -> None:
    ident = NodeIdentity.generate("0x1")
    ident.save(tmp_path, password=b"correct horse")
    key_file = (tmp_path / KEY_FILE).read_bytes()
    assert b"ENCRYPTED" in key_file and ident.key_pem not in key_file
    assert stat.S_IMODE((tmp_path / KEY_FILE).stat().st_mode) == 0o600
    assert NodeIdentity.load(tmp_path, password=b"correct horse") == ident
    with pytest.raises(IntegrityError):
        NodeIdentity.load(tmp_path, password=b"wrong")


def test_a_certificate_swapped_next_to_the_key_is_refused(tmp_path: Path) -> None:
    NodeIdentity.generate("0x1").save(tmp_path)
    other = tmp_path / "other"
    NodeIdentity.generate("0x2").save(other)
    (tmp_path / CERT_FILE).write_bytes((other / CERT_FILE).read_bytes())
    with pytest.raises(IntegrityError, match="does not match"):
        NodeIdentity.load(tmp_path)
