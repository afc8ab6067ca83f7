"""TLS contexts for the client port (stdlib ssl, TLS 1.2 and later), with etcd's file names.

A node serves TLS with --cert-file/--key-file; --trusted-ca-file is the CA it checks other
nodes' certificates against (blob fetches and peer requests go over the client port) and,
with --client-cert-auth, clients' too. A client checks the node's certificate against
--cacert (ASPEN_CACERT) and its address against the certificate's names; --cert/--key
(ASPEN_CERT, ASPEN_KEY) are its own, for nodes that require one.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from pathlib import Path

MIN_VERSION = ssl.TLSVersion.TLSv1_2
ENV_CACERT, ENV_CERT, ENV_KEY = "ASPEN_CACERT", "ASPEN_CERT", "ASPEN_KEY"


@dataclass(frozen=True, slots=True)
class TLSFiles:
    """A client's TLS files: the CA to trust, and its own certificate and key (optional)."""

    cacert: Path | None = None
    cert: Path | None = None
    key: Path | None = None

    @classmethod
    def of(cls, cacert: str | Path | None, cert: str | Path | None, key: str | Path | None) -> TLSFiles:
        return cls(*(Path(p) if p else None for p in (cacert, cert, key)))

    @classmethod
    def from_env(cls) -> TLSFiles:
        return cls.of(os.environ.get(ENV_CACERT), os.environ.get(ENV_CERT), os.environ.get(ENV_KEY))

    @property
    def wanted(self) -> bool:
        return any((self.cacert, self.cert, self.key))


def client_context(files: TLSFiles) -> ssl.SSLContext:
    """Verify the node (certificate chain and address); present a certificate when given one.

    With a CA file, only that CA is trusted (a cluster's own CA, not every public one); without
    one, the system's trust store. ValueError names what is wrong.
    """
    if (files.cert is None) != (files.key is None):
        raise ValueError("a client certificate needs both --cert and --key")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the chain and the host name
    ctx.minimum_version = MIN_VERSION
    try:
        if files.cacert is not None:
            ctx.load_verify_locations(cafile=str(files.cacert))
        else:
            ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
        if files.cert is not None and files.key is not None:
            ctx.load_cert_chain(str(files.cert), str(files.key))
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"TLS files {_names(files.cacert, files.cert, files.key)}: {exc}") from None
    return ctx


def server_context(cert_file: Path, key_file: Path, trusted_ca_file: Path | None,
                   client_cert_auth: bool) -> ssl.SSLContext:
    """The node's side: its certificate; with client_cert_auth, clients must present one the
    trusted CA signed (etcd's --client-cert-auth)."""
    if client_cert_auth and trusted_ca_file is None:
        raise ValueError(
            "--client-cert-auth needs --trusted-ca-file (the CA clients' certificates come from)"
        )
    # Not create_default_context(CLIENT_AUTH): it also trusts the system's CAs, so any public
    # certificate would pass --client-cert-auth. Only --trusted-ca-file is trusted.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = MIN_VERSION
    try:
        ctx.load_cert_chain(str(cert_file), str(key_file))
        if trusted_ca_file is not None:
            ctx.load_verify_locations(cafile=str(trusted_ca_file))
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"TLS files {_names(cert_file, key_file, trusted_ca_file)}: {exc}") from None
    ctx.verify_mode = ssl.CERT_REQUIRED if client_cert_auth else ssl.CERT_NONE
    return ctx


def _names(*paths: Path | None) -> str:
    return ", ".join(str(p) for p in paths if p is not None)
