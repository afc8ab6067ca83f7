"""Access on a real TLS cluster: a named credential (aspen/credentials.py) limited by its role to
some secrets request types, and by its policy in the plugin to some paths and transit keys."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from aspen import secrets
from aspen.unseal_key import new_unseal_key
from deploy.launcher import LocalCluster
from tests.secrets.test_barrier import eventually


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory, secrets_wasm: Path) -> Iterator[LocalCluster]:
    root = tmp_path_factory.mktemp("access")
    key = root / "unseal.key"
    key.write_text(new_unseal_key().hex())
    with LocalCluster(root / "c", tls=True, node_args=["--seal-key-file", str(key)]) as c:
        c.up(3)
        yield c


def run(c: LocalCluster, *args: str, credential: str | None = None) -> subprocess.CompletedProcess[str]:
    t = c.client_tls()
    env = {
        **os.environ,
        "ASPEN_CLUSTER": c.endpoints,
        "ASPEN_COOKIE": c.cookie,
        "ASPEN_CACERT": str(t["cacert"]),
        "ASPEN_CERT": str(t["cert"]),
        "ASPEN_KEY": str(t["key"]),
    }
    if credential:
        env["ASPEN_CREDENTIAL"] = credential
    return subprocess.run(
        [str(Path(sys.executable).parent / "aspen-cli"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_credentials_and_policies(tls: LocalCluster, secrets_wasm: Path) -> None:
    r = run(tls, "plugin", "install", str(secrets_wasm), "--manifest", str(secrets.MANIFEST), "--wait")
    assert r.returncode == 0, r.stderr
    eventually(lambda: run(tls, "secrets", "kv", "put", "app/db", "pass=p1").returncode == 0, 60)
    assert run(tls, "secrets", "kv", "put", "other/db", "pass=p2").returncode == 0
    assert run(tls, "secrets", "transit", "create", "orders").returncode == 0
    assert run(tls, "secrets", "transit", "create", "payroll").returncode == 0
    # The role names the request types; the policy the paths and keys.
    made = run(
        tls,
        "auth",
        "create",
        "app",
        "--role",
        "reader",
        "--request",
        "SecretsKvGet",
        "--request",
        "SecretsKvList",
        "--request",
        "SecretsTransitEncrypt",
        "--request",
        "SecretsKvPut",
    )
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip().splitlines()[-1]
    denied = run(tls, "secrets", "kv", "get", "app/db", credential=token)
    assert (
        denied.returncode != 0 and "PERMISSION_DENIED" in denied.stderr and 'caller "app"' in denied.stderr
    )  # no policy
    r = run(
        tls,
        "secrets",
        "policy",
        "put",
        "app",
        "--rule",
        "kv/app/*=read,list",
        "--rule",
        "transit/orders=encrypt",
    )
    assert r.returncode == 0 and "kv/app/*: read, list" in r.stdout, r.stderr
    assert (
        run(tls, "secrets", "kv", "get", "app/db", "--field", "pass", credential=token).stdout.strip() == "p1"
    )
    assert run(tls, "secrets", "kv", "list", "app/", credential=token).stdout.split() == ["db"]
    for args in (
        ("kv", "get", "other/db"),
        ("kv", "put", "app/db", "pass=x"),
        ("transit", "encrypt", "payroll", "--text", "x"),
    ):
        r = run(tls, "secrets", *args, credential=token)
        assert r.returncode != 0 and "PERMISSION_DENIED" in r.stderr, (args, r.stderr)
    assert (
        run(tls, "secrets", "transit", "encrypt", "orders", "--text", "x", credential=token).returncode == 0
    )
    # A request type the role does not name is refused by the node before the plugin sees it.
    r = run(tls, "secrets", "transit", "decrypt", "orders", "aspen:v1:AAAA", credential=token)
    assert r.returncode != 0 and "(reader) may not" in r.stderr
    # Policies are managed by root (or a 'sudo' rule on sys/policy), not by the credential.
    r = run(tls, "secrets", "policy", "put", "app", "--rule", "*=sudo", credential=token)
    assert r.returncode != 0 and "PERMISSION_DENIED" in r.stderr
    assert run(tls, "secrets", "policy", "list").stdout.split() == ["app"]
    assert (
        run(tls, "secrets", "kv", "get", "app/db", "--field", "pass").stdout.strip() == "p1"
    )  # nothing changed
