"""A certificate authority for test and local clusters, made with ``cryptography``.

:func:`make_ca` writes a self-signed CA (``ca.pem``, ``ca.key``) into a folder;
:func:`issue` signs a key pair for a server (its host names and IP addresses
in the subject alternative names) or a client. Keys are EC P-256, PKCS#8,
unencrypted: what Kafka's PEM key stores and Python's ``ssl`` both read. For
loopback clusters and tests only; production certificates come from your PKI.
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_DAYS = 30


@dataclasses.dataclass(frozen=True, slots=True)
class Issued:
    """Files of one certificate: ``cert`` (PEM chain: leaf, CA), ``key``, and both in ``pem``."""

    cert: Path
    key: Path
    pem: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "voicestream test CA"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_ca(folder: Path, name: str = "voicestream test CA") -> Path:
    """Create (or keep) ``folder/ca.pem`` and ``folder/ca.key``; return the CA file."""
    folder.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = folder / "ca.pem", folder / "ca.key"
    if cert_file.is_file() and key_file.is_file():
        return cert_file
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(_name(name))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                         crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    key_file.write_bytes(_key_pem(key))
    key_file.chmod(0o600)
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_file


def issue(folder: Path, name: str, *, hosts: tuple[str, ...] = (), server: bool = True
          ) -> Issued:
    """Sign a certificate for ``name`` with the CA in ``folder``.

    ``hosts`` (DNS names or IP addresses) go in the subject alternative names
    that clients check against the address they dialled.
    """
    ca_cert = x509.load_pem_x509_certificate((folder / "ca.pem").read_bytes())
    ca_key = serialization.load_pem_private_key((folder / "ca.key").read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    alt: list[x509.GeneralName] = []
    for host in hosts:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alt.append(x509.DNSName(host))
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (x509.CertificateBuilder().subject_name(_name(name))
               .issuer_name(ca_cert.subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=_DAYS))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
    if alt:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    chain = cert.public_bytes(serialization.Encoding.PEM) + \
        ca_cert.public_bytes(serialization.Encoding.PEM)
    out = Issued(folder / f"{name}.crt", folder / f"{name}.key", folder / f"{name}.pem")
    out.cert.write_bytes(chain)
    out.key.write_bytes(_key_pem(key))
    out.key.chmod(0o600)
    out.pem.write_bytes(_key_pem(key) + chain)
    out.pem.chmod(0o600)
    return out
