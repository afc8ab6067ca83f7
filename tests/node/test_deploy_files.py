"""The deployment files start aspen-node with flags it accepts: the systemd unit with the values
of aspen.env.example, and each docker-compose service's command."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from aspen.exits import EXIT_STORAGE_FAILED
from aspen.node import NodeConfig, parse_args

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def _config(args: list[str], cookie: Path, cookie_path_in_file: str) -> NodeConfig:
    return parse_args([str(cookie) if a == cookie_path_in_file else a for a in args])


@pytest.fixture
def cookie(tmp_path: Path) -> Path:
    path = tmp_path / "cookie"
    path.write_text("a-cookie-for-the-test-0123456789abcdef\n")
    path.chmod(0o600)
    return path


def test_the_systemd_unit_with_the_example_env_parses(cookie: Path) -> None:
    env = dict(line.split("=", 1) for line in (DEPLOY / "aspen.env.example").read_text().splitlines()
               if line and not line.startswith("#"))
    unit = (DEPLOY / "aspen-node.service").read_text()
    exec_start = re.search(r"^ExecStart=(.*?)(?<!\\)$", unit, re.S | re.M)
    assert exec_start is not None
    command = re.sub(r"\$\{(\w+)\}", lambda m: env[m.group(1)], exec_start.group(1).replace("\\\n", " "))
    args = shlex.split(command)
    assert args[0].endswith("aspen-node")
    cfg = _config(args[1:], cookie, "/etc/aspen/cookie")
    assert cfg.node_id == int(env["ASPEN_NODE_ID"]) and set(cfg.peers) == {2, 3}
    assert cfg.join_existing  # the example's ASPEN_INITIAL_CLUSTER_STATE=existing
    assert cfg.cert_file and cfg.key_file and cfg.trusted_ca_file  # a 10.x listener: TLS, not plaintext
    # A node that stopped because its disk failed is not restarted in a loop.
    assert f"RestartPreventExitStatus={EXIT_STORAGE_FAILED}" in unit.splitlines()


def test_each_compose_service_command_parses(cookie: Path) -> None:
    compose = (DEPLOY / "docker-compose.yml").read_text()
    commands = re.findall(r"command: >-\n((?:      .*\n)+)", compose)
    assert len(commands) == 3
    for node_id, text in enumerate(commands, start=1):
        cfg = _config(shlex.split(" ".join(text.split())), cookie, "/run/secrets/cookie")
        assert cfg.node_id == node_id and len(cfg.peers) == 2
        assert cfg.cert_file is not None and cfg.cert_file.name == f"node{node_id}.pem"  # 0.0.0.0: TLS
