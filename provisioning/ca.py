"""A small certificate authority for brokers that want client certificates
(``require_certificate true`` + ``use_identity_as_username true``): the broker then
takes the certificate's common name, the gateway id, as the username for its ACL."""

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from provisioning.errors import ProvisionError
from provisioning.files import write_file, write_secret

CA_DAYS = 3650
LEAF_DAYS = 1825
# mosquitto (OpenSSL) refuses EVERY client certificate once its CRL's nextUpdate has
# passed: the CRL is re-signed by each ``broker-config``, valid this long
CRL_DAYS = 1825


@dataclass
class Issued:
    cert_pem: bytes
    key_pem: bytes
    serial: str


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Pantau"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def init_ca(ca_dir: Path, common_name: str = "Pantau CA", days: int = CA_DAYS) -> Path:
    """Create ``ca.key`` (mode 600) and ``ca.crt``; refuses to overwrite an existing CA."""
    if (ca_dir / "ca.key").exists():
        raise ProvisionError(
            f"a CA already exists in {ca_dir}; every certificate it signed depends on it. "
            "Move it away first if you really mean to start over."
        )
    key = _key()
    now = dt.datetime.now(dt.UTC)
    name = _name(common_name)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    ca_dir.mkdir(parents=True, exist_ok=True)
    write_secret(ca_dir / "ca.key", _key_pem(key))
    write_file(ca_dir / "ca.crt", cert.public_bytes(serialization.Encoding.PEM))
    return ca_dir / "ca.crt"


def _load_ca(ca_dir: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    try:
        cert = x509.load_pem_x509_certificate((ca_dir / "ca.crt").read_bytes())
        key = serialization.load_pem_private_key((ca_dir / "ca.key").read_bytes(), None)
    except FileNotFoundError:
        raise ProvisionError(f"no CA in {ca_dir}: run `pantau-provision ca init` first") from None
    except ValueError as exc:
        raise ProvisionError(f"{ca_dir}: the CA files are damaged: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ProvisionError(f"{ca_dir}/ca.key: expected an EC key")
    return cert, key


def _issue(
    ca_dir: Path,
    common_name: str,
    usage: x509.ObjectIdentifier,
    sans: list[x509.GeneralName],
    days: int,
) -> Issued:
    ca_cert, ca_key = _load_ca(ca_dir)
    key = _key()
    now = dt.datetime.now(dt.UTC)
    serial = x509.random_serial_number()
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return Issued(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key), f"{serial:x}")


def issue_client(ca_dir: Path, common_name: str, days: int = LEAF_DAYS) -> Issued:
    """A client certificate whose CN is the broker username (the gateway id)."""
    return _issue(ca_dir, common_name, ExtendedKeyUsageOID.CLIENT_AUTH, [], days)


def issue_server(ca_dir: Path, hosts: list[str], days: int = LEAF_DAYS) -> Issued:
    """The broker's certificate, valid for each host name or IP address in ``hosts``."""
    if not hosts:
        raise ProvisionError("give at least one host name or IP address for the broker")
    sans: list[x509.GeneralName] = []
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    return _issue(ca_dir, hosts[0], ExtendedKeyUsageOID.SERVER_AUTH, sans, days)


def crl(ca_dir: Path, serials: list[str], days: int = CRL_DAYS) -> bytes:
    """A PEM certificate revocation list, signed by the CA, revoking ``serials`` (hex).

    mosquitto reads it through ``crlfile`` and refuses a revoked client certificate
    during the TLS handshake."""
    ca_cert, ca_key = _load_ca(ca_dir)
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now - dt.timedelta(minutes=5))
        .next_update(now + dt.timedelta(days=days))
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    for serial in sorted(set(serials)):
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(int(serial, 16))
            .revocation_date(now - dt.timedelta(minutes=5))
            .build()
        )
    return builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
