"""aspen-cli secrets ...: the barrier (unseal, seal, status, rotate-unseal-key,
new-unseal-key) and the secrets plugin's KV v2 and Transit engines (docs/SECRETS.md)."""

from __future__ import annotations

import argparse
import base64
import json
import os
import time
from pathlib import Path
from typing import Any

from aspen import secrets
from aspen.cli.registry import Commands, Outcome, UsageError
from aspen.client import Client
from aspen.exits import EXIT_ERROR
from aspen.unseal_key import key_id, new_unseal_key, read_unseal_key_file

ORDER = 65


def _key_file(path: str) -> bytes:
    try:
        return read_unseal_key_file(Path(path))
    except (ValueError, OSError) as exc:
        raise UsageError(f"{path}: {exc}") from None


def _peers(r: dict[str, Any]) -> list[str]:
    lines = []
    for peer, outcome in sorted(r.get("peers", {}).items(), key=lambda kv: int(kv[0])):
        if outcome.get("ok"):
            lines.append(f"node {peer}: {'sealed' if outcome.get('sealed') else 'unsealed'}")
        else:
            lines.append(f"node {peer}: not reached: {outcome.get('code')}: {outcome.get('message')}")
    return lines


def _state(r: dict[str, Any]) -> str:
    return (f"node {r['node_id']}: {'sealed' if r['sealed'] else 'unsealed'}"
            + ("" if r["initialized"] else " (barrier not initialized)")
            + (f", unseal key id {r['unseal_key_id']}" if r.get("unseal_key_id") else ""))


def _unseal(args: argparse.Namespace, c: Client) -> Any:
    r = c.request("SecretsUnseal", key=_key_file(args.key_file), all=not args.this_node_only)
    if args.json:
        return r
    head = "initialized the barrier's data key; " if r.get("created") else ""
    return "\n".join([head + _state(r), *_peers(r)])


def _seal(args: argparse.Namespace, c: Client) -> Any:
    r = c.request("SecretsSeal", all=not args.this_node_only)
    return r if args.json else "\n".join([_state(r), *_peers(r)])


def _status(args: argparse.Namespace, c: Client) -> Any:
    r = c.request("SecretsSealStatus")
    return r if args.json else _state(r)


def _rotate(args: argparse.Namespace, c: Client) -> Any:
    r = c.request(
        "SecretsRotateUnsealKey", old_key=_key_file(args.old_key_file), new_key=_key_file(args.new_key_file)
    )
    if args.json:
        return r
    return (f"the data key is now wrapped by unseal key id {r['unseal_key_id']}; "
            "restart nodes with the new key file")


def _new_unseal_key(args: argparse.Namespace, c: Client) -> Any:
    key = new_unseal_key()
    try:
        fd = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise UsageError(f"{args.output} exists: an unseal key is never overwritten") from None
    with os.fdopen(fd, "w") as f:
        f.write(key.hex() + "\n")
    r = {"output": args.output, "unseal_key_id": key_id(key)}
    return (
        r
        if args.json
        else (f"wrote a new unseal key to {args.output} (id {r['unseal_key_id']}); "
              "keep it off the nodes' disks")
    )


# -- KV v2 -------------------------------------------------------------------------------------


def _pairs(items: list[str], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        k, sep, v = item.partition("=")
        if not sep or not k:
            raise UsageError(f"{what}: expected KEY=VALUE, got {item!r}")
        out[k] = v
    return out


def _versions(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        versions = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"--versions: comma-separated version numbers, not {text!r}") from None
    if not versions or any(v < 1 for v in versions):
        raise UsageError("--versions: version numbers from 1")
    return versions


def _when(ms: int) -> str:
    if not ms:
        return "-"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000)) + f" ({ms})"


def _version_line(r: dict[str, Any]) -> str:
    state = (
        "destroyed"
        if r["destroyed"]
        else ("deleted" if r["deletion_ms"] and r["deletion_ms"] <= time.time() * 1000 else "live")
    )
    return f"{r['path']} version {r['version']} ({state}), created {_when(r['created_ms'])}" + (
        f", deletion {_when(r['deletion_ms'])}" if r["deletion_ms"] else ""
    )


def _kv_put(args: argparse.Namespace, c: Client) -> Any:
    rtype = "SecretsKvPatch" if args.kvcmd == "patch" else "SecretsKvPut"
    r = c.request(rtype, path=args.path, data=_pairs(args.pairs, "data"), cas=args.cas)
    return r if args.json else _version_line(r)


def _kv_get(args: argparse.Namespace, c: Client) -> Any:
    r = c.request("SecretsKvGet", path=args.path, version=args.version)
    data = r.get("data")
    if args.field is not None:
        if data is None or args.field not in data:
            return Outcome(
                {"error": f"no field {args.field!r}"} if args.json else f"no field {args.field!r}", EXIT_ERROR
            )
        return {"value": data[args.field]} if args.json else str(data[args.field])
    if args.json:
        return Outcome(r, EXIT_ERROR) if data is None else r
    lines = [_version_line(r)]
    if data is None:
        return Outcome("\n".join([*lines, "(no data: deleted or destroyed)"]), EXIT_ERROR)
    lines += [f"{k}={v}" for k, v in data.items()]
    return "\n".join(lines)


def _kv_list(args: argparse.Namespace, c: Client) -> Any:
    r = c.request("SecretsKvList", path=args.path)
    if args.json:
        return r
    return "\n".join(r["keys"] + (["(more: narrow the path)"] if r["truncated"] else []))


def _kv_versions_op(args: argparse.Namespace, c: Client) -> Any:
    rtype = {"delete": "SecretsKvDelete", "undelete": "SecretsKvUndelete", "destroy": "SecretsKvDestroy"}[
        args.kvcmd
    ]
    versions = _versions(args.versions)
    if versions is None and args.kvcmd != "delete":
        raise UsageError(f"kv {args.kvcmd} needs --versions N[,N...]")
    r = c.request(rtype, path=args.path, versions=versions)
    done = {"delete": "deleted", "undelete": "undeleted", "destroy": "destroyed"}[args.kvcmd]
    return r if args.json else f"{done} {args.path} versions {','.join(map(str, r['versions']))}"


def _metadata_text(r: dict[str, Any]) -> str:
    m = r["metadata"]
    lines = [
        f"{r['path']}: current version {m['current_version']}, oldest {m['oldest_version']}, "
        f"max_versions {m['max_versions'] or 10}, cas_required {str(m['cas_required']).lower()}, "
        f"delete_version_after {m['delete_version_after_ms']} ms",
        f"created {_when(m['created_ms'])}, updated {_when(m['updated_ms'])}",
    ]
    lines += [f"custom {k}={v}" for k, v in m["custom_metadata"].items()]
    for v in m["versions"]:
        state = (
            "destroyed"
            if v["destroyed"]
            else ("deleted" if v["deletion_ms"] and v["deletion_ms"] <= time.time() * 1000 else "live")
        )
        lines.append(
            f"  version {v['version']}: {state}, created {_when(v['created_ms'])}"
            + (f", deletion {_when(v['deletion_ms'])}" if v["deletion_ms"] else "")
        )
    return "\n".join(lines)


def _kv_metadata(args: argparse.Namespace, c: Client) -> Any:
    if args.mdcmd == "get":
        r = c.request("SecretsKvMetadataGet", path=args.path)
        return r if args.json else _metadata_text(r)
    if args.mdcmd == "delete":
        r = c.request("SecretsKvMetadataDelete", path=args.path)
        return (
            r
            if args.json
            else (f"deleted {args.path} and every version" if r["existed"] else f"no secret at {args.path}")
        )
    fields: dict[str, Any] = {"max_versions": args.max_versions}
    if args.cas_required is not None:
        fields["cas_required"] = args.cas_required == "true"
    if args.delete_version_after is not None:
        try:
            fields["delete_version_after_ms"] = secrets.duration_ms(args.delete_version_after)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    if args.custom_metadata:
        fields["custom_metadata"] = _pairs(args.custom_metadata, "--custom-metadata")
    r = c.request("SecretsKvMetadataPut", path=args.path, **fields)
    return r if args.json else _metadata_text(r)


def _register_kv(commands: Commands) -> None:
    common = [commands._common]  # the global options after a nested command too
    kv = commands.command("secrets", "kv", _kv_metadata, "KV v2 secrets (Vault's kv put/get/list/...)")
    sub = kv.add_subparsers(dest="kvcmd", required=True, metavar="COMMAND")
    for name, help_text in (
        ("put", "write a new version: KEY=VALUE ..."),
        ("patch", "merge fields into a new version"),
    ):
        p = sub.add_parser(name, help=help_text, description=help_text, parents=common)
        p.add_argument("path")
        p.add_argument("pairs", nargs="+", metavar="KEY=VALUE")
        p.add_argument("--cas", type=int, help="the current version it must be (0: must not exist)")
        p.set_defaults(handler=_kv_put)
    # Vault's --version: here a version number, not the program's version. Its own copy of the
    # global options (resolve edits the parent's actions in place: a shared one must not be).
    from aspen.cli import add_global_options

    own = argparse.ArgumentParser(add_help=False)
    add_global_options(own, defaults=False)
    p = sub.add_parser(
        "get",
        help="a version's fields",
        description="a version's fields",
        parents=[own],
        conflict_handler="resolve",
    )
    p.add_argument("path")
    p.add_argument("--version", type=int, help="the version to read (default: the latest)")
    p.add_argument("--field", help="print only this field's value")
    p.set_defaults(handler=_kv_get)
    p = sub.add_parser("list", help="keys under a path", description="keys under a path", parents=common)
    p.add_argument("path", nargs="?", default="")
    p.set_defaults(handler=_kv_list)
    for name, help_text in (
        ("delete", "soft-delete the latest version or --versions"),
        ("undelete", "undelete --versions"),
        ("destroy", "destroy --versions for good"),
    ):
        p = sub.add_parser(name, help=help_text, description=help_text, parents=common)
        p.add_argument("path")
        p.add_argument("--versions", metavar="N[,N...]")
        p.set_defaults(handler=_kv_versions_op)
    md = sub.add_parser("metadata", help="a path's metadata", description="a path's metadata", parents=common)
    mdsub = md.add_subparsers(dest="mdcmd", required=True, metavar="COMMAND")
    for name in ("get", "delete"):
        p = mdsub.add_parser(
            name,
            help=f"{name} the metadata" + (" and every version" if name == "delete" else ""),
            parents=common,
        )
        p.add_argument("path")
        p.set_defaults(handler=_kv_metadata)
    p = mdsub.add_parser(
        "put", help="set max_versions, cas_required, delete_version_after, custom metadata", parents=common
    )
    p.add_argument("path")
    p.add_argument("--max-versions", type=int)
    p.add_argument("--cas-required", choices=("true", "false"))
    p.add_argument("--delete-version-after", metavar="DURATION", help="e.g. 30s, 10m, 2h, 7d; 0 turns it off")
    p.add_argument("--custom-metadata", nargs="+", metavar="KEY=VALUE")
    p.set_defaults(handler=_kv_metadata)


# -- Transit -----------------------------------------------------------------------------------


def _b64_input(args: argparse.Namespace, b64_name: str, text_name: str, required: bool = True) -> str | None:
    b64, text = getattr(args, b64_name, None), getattr(args, text_name, None)
    if b64 is not None and text is not None:
        raise UsageError(f"give --{b64_name} (base64) or --{text_name} (UTF-8 text), not both")
    if text is not None:
        return base64.b64encode(text.encode()).decode()
    if b64 is None and required:
        raise UsageError(f"give --{b64_name} BASE64 or --{text_name} TEXT")
    return b64


def _batch(args: argparse.Namespace) -> list[Any] | None:
    if args.batch is None:
        return None
    try:
        items = json.loads(Path(args.batch).read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"--batch {args.batch}: {exc}") from None
    if not isinstance(items, list):
        raise UsageError("--batch: a JSON list of objects")
    return items


def _key_text(k: dict[str, Any]) -> str:
    lines = [
        f"{k['name']}: {k['type']}, latest version {k['latest_version']}, min_decryption_version "
        f"{k['min_decryption_version']}, min_encryption_version {k['min_encryption_version']}, "
        f"min_available_version {k['min_available_version']}",
        f"derived {str(k['derived']).lower()}, convergent {str(k['convergent_encryption']).lower()}, "
        f"exportable {str(k['exportable']).lower()}, deletion_allowed {str(k['deletion_allowed']).lower()}",
    ]
    for v, info in sorted(k["keys"].items(), key=lambda kv: int(kv[0])):
        lines.append(
            f"  version {v}: created {_when(info['created_ms'])}"
            + (f", public key {info['public_key']}" if "public_key" in info else "")
        )
    return "\n".join(lines)


def _batch_text(r: dict[str, Any], field: str) -> str:
    return "\n".join(item.get(field) or f"error: {item.get('error')}" for item in r["batch_results"])


def _transit(args: argparse.Namespace, c: Client) -> Any:
    cmd, name = args.trcmd, getattr(args, "name", None)
    if cmd == "list":
        r = c.request("SecretsTransitList")
        return r if args.json else "\n".join(r["keys"])
    if cmd == "create":
        r = c.request(
            "SecretsTransitCreate",
            name=name,
            key_type=args.type,
            derived=args.derived,
            convergent_encryption=args.convergent,
            exportable=args.exportable,
        )
        return r if args.json else ("created " if r["created"] else "exists: ") + _key_text(r["key"])
    if cmd in ("read", "rotate", "delete"):
        r = c.request(
            {
                "read": "SecretsTransitRead",
                "rotate": "SecretsTransitRotate",
                "delete": "SecretsTransitDelete",
            }[cmd],
            name=name,
        )
        if args.json:
            return r
        return f"deleted {name}" if cmd == "delete" else _key_text(r["key"])
    if cmd == "config":
        fields: dict[str, Any] = {
            "min_decryption_version": args.min_decryption_version,
            "min_encryption_version": args.min_encryption_version,
        }
        if args.deletion_allowed is not None:
            fields["deletion_allowed"] = args.deletion_allowed == "true"
        if args.exportable is not None:
            fields["exportable"] = args.exportable == "true"
        r = c.request("SecretsTransitConfig", name=name, **fields)
        return r if args.json else _key_text(r["key"])
    if cmd == "trim":
        r = c.request("SecretsTransitTrim", name=name, min_available_version=args.min_available_version)
        return r if args.json else _key_text(r["key"])
    if cmd == "encrypt":
        batch = _batch(args)
        plaintext = None if batch is not None else _b64_input(args, "plaintext", "text")
        r = c.request(
            "SecretsTransitEncrypt",
            name=name,
            plaintext=plaintext,
            context=args.context,
            key_version=args.key_version,
            batch_input=batch,
        )
        return r if args.json else (_batch_text(r, "ciphertext") if batch is not None else r["ciphertext"])
    if cmd in ("decrypt", "rewrap"):
        batch = _batch(args)
        if batch is None and args.ciphertext is None:
            raise UsageError(f"transit {cmd}: give CIPHERTEXT or --batch FILE")
        extra = {"key_version": args.key_version} if cmd == "rewrap" else {}
        r = c.request(
            "SecretsTransitDecrypt" if cmd == "decrypt" else "SecretsTransitRewrap",
            name=name,
            ciphertext=args.ciphertext,
            context=args.context,
            batch_input=batch,
            **extra,
        )
        if args.json:
            return r
        field = "plaintext" if cmd == "decrypt" else "ciphertext"
        if batch is not None:
            return _batch_text(r, field)
        if cmd == "decrypt" and args.decode:
            return base64.b64decode(r["plaintext"]).decode(errors="replace")
        return r[field]
    if cmd == "datakey":
        r = c.request(
            "SecretsTransitDatakey", name=name, key_kind=args.kind, bits=args.bits, context=args.context
        )
        return r if args.json else "\n".join(f"{k}: {r[k]}" for k in ("ciphertext", "plaintext") if k in r)
    if cmd == "sign":
        r = c.request(
            "SecretsTransitSign",
            name=name,
            input=_b64_input(args, "input", "text"),
            key_version=args.key_version,
        )
        return r if args.json else r["signature"]
    if cmd == "verify":
        if (args.signature is None) == (args.hmac is None):
            raise UsageError("transit verify: give --signature or --hmac")
        r = c.request(
            "SecretsTransitVerify",
            name=name,
            input=_b64_input(args, "input", "text"),
            signature=args.signature,
            hmac=args.hmac,
        )
        if args.json:
            return r if r["valid"] else Outcome(r, EXIT_ERROR)
        return "valid" if r["valid"] else Outcome("invalid", EXIT_ERROR)
    if cmd == "hmac":
        r = c.request(
            "SecretsTransitHmac",
            name=name,
            input=_b64_input(args, "input", "text"),
            key_version=args.key_version,
        )
        return r if args.json else r["hmac"]
    version: Any = args.version
    if version is not None and version != "latest":
        try:
            version = int(version)
        except ValueError:
            raise UsageError("--version: a number or latest") from None
    r = c.request("SecretsTransitExport", name=name, export_type=args.export_type, version=version)
    return (
        r
        if args.json
        else "\n".join(f"version {v}: {k}" for v, k in sorted(r["keys"].items(), key=lambda kv: int(kv[0])))
    )


def _register_transit(commands: Commands) -> None:
    common = [commands._common]
    tr = commands.command(
        "secrets", "transit", _transit, "Transit: encryption as a service (Vault's transit)"
    )
    sub = tr.add_subparsers(dest="trcmd", required=True, metavar="COMMAND")

    def cmd(
        name: str,
        help_text: str,
        with_name: bool = True,
        parents: list[argparse.ArgumentParser] = common,
        **kw: Any,
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text, parents=parents, **kw)
        if with_name:
            p.add_argument("name", help="the key's name")
        p.set_defaults(handler=_transit)
        return p

    p = cmd("create", "create a key (Vault's defaults: xchacha20-poly1305)")
    p.add_argument(
        "--type", default="xchacha20-poly1305", choices=("xchacha20-poly1305", "aes256-gcm96", "ed25519")
    )
    p.add_argument(
        "--derived", action="store_true", help="every operation takes a --context (a key per context)"
    )
    p.add_argument(
        "--convergent",
        action="store_true",
        help="same plaintext and context, same ciphertext (needs --derived)",
    )
    p.add_argument("--exportable", action="store_true", help="allow export (cannot be undone)")
    cmd("read", "versions and config (never the key material)")
    cmd("list", "every key's name", with_name=False)
    cmd("rotate", "a new version; encryption uses it from now on")
    cmd("delete", "delete the key (only after config --deletion-allowed true)")
    p = cmd("config", "min versions, deletion_allowed, exportable")
    p.add_argument("--min-decryption-version", type=int)
    p.add_argument("--min-encryption-version", type=int)
    p.add_argument("--deletion-allowed", choices=("true", "false"))
    p.add_argument("--exportable", choices=("true", "false"))
    p = cmd("trim", "drop versions below --min-available-version for good")
    p.add_argument("--min-available-version", type=int, required=True)
    p = cmd("encrypt", "encrypt --plaintext BASE64 or --text TEXT (or --batch FILE: a JSON list)")
    p.add_argument("--plaintext", metavar="BASE64")
    p.add_argument("--text", metavar="TEXT", help="UTF-8 text, base64-encoded for you")
    p.add_argument("--context", metavar="BASE64")
    p.add_argument("--key-version", type=int)
    p.add_argument("--batch", metavar="FILE", help='JSON [{"plaintext": B64, "context": B64}, ...]')
    for name, help_text in (
        ("decrypt", "decrypt a ciphertext (prints base64; --decode prints text)"),
        ("rewrap", "re-encrypt a ciphertext under the latest version"),
    ):
        p = cmd(name, help_text)
        p.add_argument("ciphertext", nargs="?")
        p.add_argument("--context", metavar="BASE64")
        p.add_argument("--batch", metavar="FILE", help='JSON [{"ciphertext": C, "context": B64}, ...]')
        if name == "decrypt":
            p.add_argument("--decode", action="store_true", help="print the plaintext as text")
        else:
            p.add_argument("--key-version", type=int)
    p = cmd("datakey", "a new data key, wrapped by this key (and in plaintext)")
    p.add_argument("kind", choices=("plaintext", "wrapped"))
    p.add_argument("--bits", type=int, default=256, choices=(128, 256, 512))
    p.add_argument("--context", metavar="BASE64")
    for name in ("sign", "hmac"):
        p = cmd(name, "an ed25519 signature" if name == "sign" else "an HMAC-SHA256 of the input")
        p.add_argument("--input", metavar="BASE64")
        p.add_argument("--text", metavar="TEXT")
        p.add_argument("--key-version", type=int)
    p = cmd("verify", "check a --signature or an --hmac (exit status 1 when invalid)")
    p.add_argument("--input", metavar="BASE64")
    p.add_argument("--text", metavar="TEXT")
    p.add_argument("--signature")
    p.add_argument("--hmac")
    from aspen.cli import add_global_options

    own = argparse.ArgumentParser(add_help=False)
    add_global_options(own, defaults=False)
    p = cmd("export", "the key material (only an exportable key)", parents=[own], conflict_handler="resolve")
    p.add_argument("export_type", choices=("encryption-key", "signing-key", "hmac-key"))
    p.add_argument("--version", help="a version number or latest (default: every version)")


# -- policies ----------------------------------------------------------------------------------


def _rule(text: str) -> dict[str, Any]:
    path, sep, caps = text.rpartition("=")
    if not sep or not path or not caps:
        raise UsageError(f"--rule: PATH=CAP[,CAP...] (e.g. 'kv/app/*=read,list'), not {text!r}")
    return {"path": path, "capabilities": [c for c in caps.split(",") if c]}


def _policy_text(r: dict[str, Any]) -> str:
    return "\n".join(
        [f"policy {r['name']}:"] + [f"  {x['path']}: {', '.join(x['capabilities'])}" for x in r["rules"]]
    )


def _policy(args: argparse.Namespace, c: Client) -> Any:
    if args.polcmd == "list":
        r = c.request("SecretsPolicyList")
        return r if args.json else "\n".join(r["names"])
    if args.polcmd == "put":
        r = c.request("SecretsPolicyPut", name=args.name, rules=[_rule(x) for x in args.rule])
        return r if args.json else _policy_text(r)
    if args.polcmd == "get":
        r = c.request("SecretsPolicyGet", name=args.name)
        return r if args.json else _policy_text(r)
    r = c.request("SecretsPolicyDelete", name=args.name)
    return (
        r
        if args.json
        else (f"deleted the policy of {args.name}" if r["existed"] else f"no policy for {args.name}")
    )


def _register_policy(commands: Commands) -> None:
    common = [commands._common]
    pol = commands.command("secrets", "policy", _policy, "what each caller (credential name) may do")
    sub = pol.add_subparsers(dest="polcmd", required=True, metavar="COMMAND")
    p = sub.add_parser("put", help="set a caller's rules", parents=common)
    p.add_argument("name", help="the credential's name (aspen-cli auth create NAME)")
    p.add_argument(
        "--rule",
        action="append",
        required=True,
        metavar="PATH=CAPS",
        help="kv/PATH or transit/NAME, '*' at the end for a prefix; e.g. 'kv/app/*=read,list'",
    )
    p.set_defaults(handler=_policy)
    for name in ("get", "delete"):
        p = sub.add_parser(name, help=f"{name} a caller's policy", parents=common)
        p.add_argument("name")
        p.set_defaults(handler=_policy)
    sub.add_parser("list", help="the callers that have a policy", parents=common).set_defaults(
        handler=_policy
    )


def register(commands: Commands) -> None:
    commands.group("secrets", "the secrets barrier and the secrets plugin (docs/SECRETS.md)")
    p = commands.command(
        "secrets", "unseal", _unseal, "unseal every node (the first unseal creates the data key)"
    )
    p.add_argument("--key-file", required=True, metavar="FILE", help="the unseal key (64 hex characters)")
    p.add_argument("--this-node-only", action="store_true", help="only the node the request reaches")
    p = commands.command("secrets", "seal", _seal, "drop the data key from every node's memory")
    p.add_argument("--this-node-only", action="store_true", help="only the node the request reaches")
    commands.command("secrets", "status", _status, "is the node sealed; which unseal key the cluster expects")
    p = commands.command(
        "secrets", "rotate-unseal-key", _rotate, "rewrap the data key under a new unseal key"
    )
    p.add_argument("--old-key-file", required=True, metavar="FILE")
    p.add_argument("--new-key-file", required=True, metavar="FILE")
    p = commands.command(
        "secrets", "new-unseal-key", _new_unseal_key, "write a new random unseal key to a file (0600)"
    )
    p.add_argument("-o", "--output", required=True, metavar="FILE")
    _register_kv(commands)
    _register_transit(commands)
    _register_policy(commands)
