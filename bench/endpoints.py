"""The local endpoints, each its own process on 127.0.0.1 with a free port: fauxqs (SQS,
on a Node >= 22.5 installed from npm into bench/sqs_server/node_modules), relay's Transfer
Family emulator, for contenders with `--dedupe-table`, moto's DynamoDB, and for traced
contenders an OTLP/HTTP receiver. Also: which addresses a process listens on, to prove it is
loopback only.
"""

import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from bench.processes import Child, Children, wait_for_line

REPO: Final = Path(__file__).resolve().parent.parent
SQS_SERVER_DIR: Final = REPO / "bench" / "sqs_server"
NODE_MODULES: Final = SQS_SERVER_DIR / "node_modules"
MIN_NODE: Final = (22, 5)
EMULATOR_SEED: Final = 7


class SetupError(Exception):
    """An endpoint cannot be started; the message says what to do."""


def node_binary() -> Path:
    """Node from npm's `node` package in bench/sqs_server, else a new enough `node` on PATH."""
    local = NODE_MODULES / "node" / "bin" / "node"
    candidates = [local] if local.exists() else []
    if (on_path := shutil.which("node")) is not None:
        candidates.append(Path(on_path))
    for candidate in candidates:
        version = _node_version(candidate)
        if version is not None and version >= MIN_NODE:
            return candidate
    raise SetupError(
        f"fauxqs needs Node >= {MIN_NODE[0]}.{MIN_NODE[1]}: run `make bench` "
        f"(it runs `npm ci` in {SQS_SERVER_DIR.relative_to(REPO)})"
    )


def _node_version(node: Path) -> tuple[int, int] | None:
    try:
        text = subprocess.run(
            [str(node), "--version"], capture_output=True, text=True, timeout=20, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.match(r"v(\d+)\.(\d+)", text.strip())
    return (int(match[1]), int(match[2])) if match else None


def package_version(name: str) -> str | None:
    """The installed version of an npm package in bench/sqs_server, or None."""
    try:
        manifest = json.loads((NODE_MODULES / name / "package.json").read_text())
    except (OSError, ValueError):
        return None
    version = manifest.get("version")
    return str(version) if version is not None else None


def listening_addresses(pid: int) -> list[str]:
    """The TCP addresses (host:port) this process listens on, from /proc (no `ss` needed)."""
    inodes: set[str] = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        return []
    found: list[str] = []
    for table, width in (("tcp", 4), ("tcp6", 16)):
        try:
            rows = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            columns = row.split()
            if len(columns) < 10 or columns[3] != "0A" or columns[9] not in inodes:
                continue  # 0A = LISTEN
            address_hex, port_hex = columns[1].split(":")
            raw = bytes.fromhex(address_hex)
            # /proc prints each 32-bit word in host (little-endian) order.
            words = [raw[i : i + 4][::-1] for i in range(0, width, 4)]
            address = ipaddress.ip_address(b"".join(words))
            found.append(f"{address}:{int(port_hex, 16)}")
    return sorted(found)


def all_loopback(addresses: list[str]) -> bool:
    """Whether every listening address is on the loopback range."""
    return all(ipaddress.ip_address(a.rsplit(":", 1)[0]).is_loopback for a in addresses)


@dataclass(frozen=True, slots=True)
class Endpoints:
    """The running endpoints and what ran."""

    sqs_url: str
    transfer_url: str
    sqs: Child
    emulator: Child
    node: str
    node_version: str
    fauxqs_version: str | None


def require_loopback(child: Child) -> None:
    """Refuses a child that listens anywhere but on loopback (or on nothing at all)."""
    addresses = listening_addresses(child.pid)
    if not addresses or not all_loopback(addresses):
        raise SetupError(f"{child.name} listens on {addresses}, not only on loopback")


def start_server_module(
    children: Children, name: str, module: str, *, env: Mapping[str, str], logs: Path
) -> tuple[Child, str]:
    """Starts `python -m module` (a loopback server on a free port that prints
    "NAME listening on URL" and exits when its stdin closes); its child and URL."""
    child = children.start(
        name,
        [sys.executable, "-m", module],
        env=env,
        cwd=REPO,
        log_path=logs / f"{name}.log",
        keep_stdin=True,  # it exits when we close this, even if we die without a signal
    )
    url = wait_for_line(child, f"{name} listening on").split()[-1]
    require_loopback(child)
    return child, url


def ask(child: Child, question: str, number: int) -> str:
    """Asks a server child `question` (numbered, so a late answer is never taken for this
    one's) over its stdin; the answer's text."""
    child.send_line(f"{question} {number}")
    line = wait_for_line(child, f"{question} {number} ", timeout_s=10.0)
    return line.split(" ", 2)[2]


def start_endpoints(children: Children, *, env: Mapping[str, str], logs: Path) -> Endpoints:
    """Start fauxqs and the emulator (loopback, free ports); refuse any non-loopback listener."""
    node = node_binary()
    sqs = children.start(
        "fauxqs",
        [str(node), "--no-warnings", str(SQS_SERVER_DIR / "fauxqs.mjs"), "0"],
        env=env,
        cwd=SQS_SERVER_DIR,
        log_path=logs / "fauxqs.log",
        keep_stdin=True,  # it exits when we close this, even if we die without a signal
    )
    emulator = children.start(
        "emulator",
        [
            sys.executable,
            "-m",
            "relay",
            "emulator",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--seed",
            str(EMULATOR_SEED),
        ],
        env=env,
        cwd=REPO,
        log_path=logs / "emulator.log",
    )
    sqs_url = wait_for_line(sqs, "fauxqs listening on").split()[-1]
    transfer_url = wait_for_line(emulator, "emulator listening on").split()[-1]
    for child in (sqs, emulator):
        require_loopback(child)
    version = subprocess.run(
        [str(node), "--version"], capture_output=True, text=True, timeout=20, check=False
    ).stdout.strip()
    return Endpoints(
        sqs_url=sqs_url,
        transfer_url=transfer_url,
        sqs=sqs,
        emulator=emulator,
        node=str(node),
        node_version=version or "unknown",
        fauxqs_version=package_version("fauxqs"),
    )


@dataclass(slots=True)
class TableEndpoint:
    """moto's DynamoDB in a process of its own (`bench.dynamodb_server`), for `--dedupe-table`."""

    url: str
    child: Child
    _asked: int = 0

    def calls(self) -> dict[str, int]:
        """The calls moto has served so far, by operation (PutItem, UpdateItem, GetItem, ...)."""
        self._asked += 1
        counts = json.loads(ask(self.child, "calls", self._asked))
        return {str(k): int(v) for k, v in counts.items()}


def start_table_endpoint(
    children: Children, *, env: Mapping[str, str], logs: Path
) -> TableEndpoint:
    """Start moto's DynamoDB server (loopback, free port); refuse any non-loopback listener."""
    child, url = start_server_module(
        children, "dynamodb", "bench.dynamodb_server", env=env, logs=logs
    )
    return TableEndpoint(url=url, child=child)


@dataclass(slots=True)
class OtlpEndpoint:
    """An OTLP/HTTP receiver in a process of its own (`bench.otlp_server`), for traced relays:
    it counts the spans it receives."""

    url: str
    child: Child
    _asked: int = 0

    def spans(self) -> int:
        """The spans received so far."""
        self._asked += 1
        return int(ask(self.child, "spans", self._asked))


def start_otlp_endpoint(children: Children, *, env: Mapping[str, str], logs: Path) -> OtlpEndpoint:
    """Start the OTLP receiver (loopback, free port); refuse any non-loopback listener."""
    child, url = start_server_module(children, "otlp", "bench.otlp_server", env=env, logs=logs)
    return OtlpEndpoint(url=url, child=child)
