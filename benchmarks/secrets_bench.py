"""Secrets plugin benchmark: transit encrypt/decrypt of 1 KiB and KV v2 get, against native
ReadKey in the same run, at 1 and 64 requests in flight.

    python benchmarks/secrets_bench.py [--seconds 3] [--no-readme]

Needs the plugin built (`make secrets-plugin`). A 3-node cluster on loopback, unsealed by
--seal-key-file; one AsyncClient (leader discovery on) per case. Target (issue 14): transit
encrypt at 64 in flight >= 0.6x native ReadKey's throughput at 64 in flight. A program that
reports, never a timed test.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aspen import secrets
from aspen.client import AsyncClient
from aspen.unseal_key import new_unseal_key
from benchmarks.report import write_section
from deploy.launcher import LocalCluster

IN_FLIGHT = (1, 64)
TARGET_RATIO = 0.6
PLAINTEXT = base64.b64encode(os.urandom(1024)).decode()


async def throughput(
    op: Callable[[int], Awaitable[Any]], in_flight: int, seconds: float
) -> tuple[float, int]:
    """(acknowledged requests per second, errors) with `in_flight` outstanding, for `seconds`."""
    done = errors = 0
    stop = time.perf_counter() + seconds

    async def worker(w: int) -> None:
        nonlocal done, errors
        i = w
        while time.perf_counter() < stop:
            try:
                await op(i)
                done += 1
            except Exception:
                errors += 1
            i += in_flight

    started = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(in_flight)))
    return done / (time.perf_counter() - started), errors


async def measure(cluster: LocalCluster, seconds: float) -> dict[tuple[str, int], tuple[float, int]]:
    client = AsyncClient(cluster.endpoints, cluster.cookie, timeout_s=30)
    out: dict[tuple[str, int], tuple[float, int]] = {}
    try:
        await client.request("WriteKey", key="bench/native", value=os.urandom(1024))
        await client.request("SecretsTransitCreate", name="bench")
        await client.request("SecretsKvPut", path="bench/kv", data={"v": "x" * 1024})
        ct = (await client.request("SecretsTransitEncrypt", name="bench", plaintext=PLAINTEXT))["ciphertext"]
        cases: dict[str, Callable[[int], Awaitable[Any]]] = {
            "native ReadKey (1 KiB)": lambda i: client.request("ReadKey", key="bench/native"),
            "transit encrypt 1 KiB": lambda i: client.request(
                "SecretsTransitEncrypt", name="bench", plaintext=PLAINTEXT
            ),
            "transit decrypt 1 KiB": lambda i: client.request(
                "SecretsTransitDecrypt", name="bench", ciphertext=ct
            ),
            "kv v2 get (1 KiB)": lambda i: client.request("SecretsKvGet", path="bench/kv"),
        }
        for name, op in cases.items():
            await op(0)  # warm: connections, plugin instances
            for n in IN_FLIGHT:
                out[(name, n)] = await throughput(op, n, seconds)
    finally:
        await client.close()
    return out


def run(seconds: float) -> dict[tuple[str, int], tuple[float, int]]:
    with tempfile.TemporaryDirectory(prefix="aspen-secrets-bench-") as tmp:
        key = Path(tmp) / "unseal.key"
        key.write_text(new_unseal_key().hex())
        cluster = LocalCluster(Path(tmp) / "c", node_args=["--seal-key-file", str(key)])
        cluster.up(3)
        try:
            import subprocess

            env = {**os.environ, "ASPEN_CLUSTER": cluster.endpoints, "ASPEN_COOKIE": cluster.cookie}
            r = subprocess.run(
                [
                    str(Path(sys.executable).parent / "aspen-cli"),
                    "plugin",
                    "install",
                    str(secrets.WASM),
                    "--manifest",
                    str(secrets.MANIFEST),
                    "--wait",
                ],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert r.returncode == 0, r.stderr
            deadline = time.monotonic() + 60
            while True:  # every node unsealed (auto-unseal from --seal-key-file)
                r = subprocess.run(
                    [str(Path(sys.executable).parent / "aspen-cli"), "--json", "secrets", "kv", "list"],
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=60,
                )
                if r.returncode == 0:
                    break
                assert time.monotonic() < deadline, r.stderr
                time.sleep(0.5)
            return asyncio.run(measure(cluster, seconds))
        finally:
            cluster.down()


def table(results: dict[tuple[str, int], tuple[float, int]]) -> str:
    native = {n: results[("native ReadKey (1 KiB)", n)][0] for n in IN_FLIGHT}
    lines = [
        "| case | " + " | ".join(f"{n} in flight req/s (x native)" for n in IN_FLIGHT) + " | errors |",
        "|---|" + "---|" * len(IN_FLIGHT) + "---|",
    ]
    names = list(dict.fromkeys(name for name, _ in results))
    for name in names:
        cells = [
            f"{results[(name, n)][0]:,.0f} ({results[(name, n)][0] / native[n]:.2f}x)" for n in IN_FLIGHT
        ]
        errors = sum(results[(name, n)][1] for n in IN_FLIGHT)
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {errors} |")
    ratio = results[("transit encrypt 1 KiB", 64)][0] / native[64]
    lines.append("")
    lines.append(
        f"Target: transit encrypt at 64 in flight >= {TARGET_RATIO}x native ReadKey: "
        f"{ratio:.2f}x, {'met' if ratio >= TARGET_RATIO else 'not met'}."
    )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=3.0, help="how long each case runs at each concurrency")
    ap.add_argument("--no-readme", action="store_true", help="print only; do not write benchmarks/README.md")
    args = ap.parse_args()
    text = table(run(args.seconds))
    print(text)
    if not args.no_readme:
        note = (
            f"3 nodes on 127.0.0.1 (unsealed by --seal-key-file), one Python AsyncClient, {args.seconds:g} s "
            f"per case and concurrency, measured {time.strftime('%Y-%m-%d')} on a 2-core machine shared with "
            "other work. Reads (ReadKey, KV v2 get) are linearizable (a read barrier each); transit "
            "encrypt and decrypt read the key record the same way, then seal/open through the node's host "
            "crypto. Where the time goes: "
            "in the test kit a 1 KiB encrypt takes ~12.5 us of CPU (the guest ~6: the request, base64 both "
            "ways, the key record compared with the one it opened last; the host ~6: msgpack in and out, "
            "three host calls, the XChaCha20-Poly1305 seal answered in C, ~2 of it), where a plugin's "
            "kv_get ReadKey takes ~5. At 64 in flight the requests of one loop turn cross the leader as one "
            "batch (one read barrier, the plugin's worker thread, the answers) while the client waits, and "
            "the client's work on the answers waits for the leader's: a request costs about the leader's "
            "CPU for it plus the client's, and the ratios follow those sums. Measurements behind this: the "
            "end of this file."
        )
        write_section(
            "secrets_bench", "Secrets plugin: transit and KV v2 against native ReadKey", note + "\n\n" + text
        )


if __name__ == "__main__":
    main()
