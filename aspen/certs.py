"""A small certificate authority for Aspen clusters (the `cryptography` package).

    python -m aspen.certs ca --dir tls                       # tls/ca.pem, tls/ca.key
    python -m aspen.certs issue --dir tls --name node1 --host 10.0.0.11 --host node1
    python -m aspen.certs issue --dir tls --name client      # a client certificate

`aspen-cluster up --tls` does the same for a local cluster. Keys are ECDSA P-256 and written
mode 0600. A node's certificate names every address clients and other nodes dial it by (IP
addresses and DNS names) and serves both as its server and its client certificate (nodes
fetch blobs from each other over the client port), so it carries both key usages.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_VALID_DAYS = 3650
CERT_VALID_DAYS = 825  # the most browsers accept; rotate well before (docs/OPERATIONS.md)


@dataclass(frozen=True, slots=True)
class Issued:
    cert: Path
    key: Path


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def create_ca(directory: Path, name: str = "Aspen cluster CA") -> Issued:
    """A new CA in directory/ca.pem and directory/ca.key."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - datetime.timedelta(minutes=5))
        .not_valid_after(_now() + datetime.timedelta(days=CA_VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    out = Issued(directory / "ca.pem", directory / "ca.key")
    out.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(out.key, key)
    return out


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def issue(directory: Path, name: str, hosts: list[str], valid_days: int = CERT_VALID_DAYS) -> Issued:
    """A certificate signed by directory's CA, for `hosts` (none: a client certificate), in
    directory/NAME.pem and directory/NAME.key."""
    ca_cert = x509.load_pem_x509_certificate((directory / "ca.pem").read_bytes())
    ca_key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{directory / 'ca.key'}: not an EC key")
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - datetime.timedelta(minutes=5))
        .not_valid_after(_now() + datetime.timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
    )
    if hosts:
        builder = builder.add_extension(x509.SubjectAlternativeName([_san(h) for h in hosts]), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    out = Issued(directory / f"{name}.pem", directory / f"{name}.key")
    out.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(out.key, key)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m aspen.certs", description="A CA and certificates for Aspen.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("ca", help="create DIR/ca.pem and DIR/ca.key")
    p.add_argument("--dir", type=Path, required=True)
    p = sub.add_parser("issue", help="create DIR/NAME.pem and DIR/NAME.key, signed by DIR's CA")
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--host", action="append", default=[], help="an address the node is dialed by (repeat)")
    p.add_argument("--days", type=int, default=CERT_VALID_DAYS)
    args = ap.parse_args(argv)
    try:
        out = create_ca(args.dir) if args.cmd == "ca" else issue(args.dir, args.name, args.host, args.days)
    except (OSError, ValueError) as exc:
        sys.exit(f"aspen.certs: {exc}")
    print(f"{out.cert}\n{out.key}")


if __name__ == "__main__":
    main()
