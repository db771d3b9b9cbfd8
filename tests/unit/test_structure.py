"""The module map holds (STYLE.md): relay's imports run one way, without a circle, and no module
outgrows what a reader takes in at once. Read from the source with `ast`; nothing is imported.

Every import counts, wherever it stands (at the top, inside a function, under TYPE_CHECKING):
each is a module a reader has to follow. A package stands for its `__init__`; a module importing
a package it belongs to (`relay`, for `DISTRIBUTION`) is not an arrow, since every module is
inside its packages anyway.
"""

import ast
import functools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parents[2]

MAX_LINES: Final = 500
LONG_FOR_NOW: Final[dict[str, str]] = {}
"""Modules that were over MAX_LINES when this test came, and why they may stay for now; the test
fails once one is within it, so its entry goes."""

LAYERS: Final = (
    ("cli", {"relay.cli", "relay.__main__"}),
    ("commands", {"relay.worker", "relay.dlq", "relay.demo"}),
    ("delivery", {"relay.delivery"}),
    (
        "adapters and services",
        {
            "relay.sqs",
            "relay.transfer",
            "relay.dedupe",
            "relay.http",
            "relay.observability",
            "relay.emf",
            "relay.lifecycle",
            "relay.terminal",
            "relay.progress",
            "relay.executions",
            "relay.tracing",
        },
    ),
    ("domain", {"relay.message", "relay.outcomes", "relay.limits"}),
)
"""STYLE's layers, highest first; a package stands for its modules. Modules in no layer (config,
errors, the emulator, the producer, ...) are not ranked."""

DOMAIN: Final = LAYERS[-1][1]
SHARED_BY_ALL: Final = {"relay.errors"}
"""The one error base (`RelayError`) every layer raises from, the domain included."""
CLIENT_LIBRARIES: Final = {"aiobotocore", "botocore", "aiohttp"}


@dataclass(frozen=True)
class Import:
    """One name an import statement brings in, and where it stands."""

    importer: str
    """The importing module, dotted (`relay.dlq.scan`; a package is its `__init__`)."""
    name: str
    """What is imported, dotted (`relay.sqs.receive_messages`, `rich.console.Console`)."""
    module: str | None
    """The relay module or package that provides it; None outside relay."""
    path: Path
    line: int
    statement: str

    @property
    def top(self) -> str:
        """The top-level package it comes from (`rich`, `relay`)."""
        return self.name.split(".")[0]

    def __str__(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}: {self.statement}"


def _dotted(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@functools.cache
def _relay_modules() -> frozenset[str]:
    return frozenset(_dotted(path) for path in (ROOT / "relay").rglob("*.py"))


def _provider(name: str) -> str | None:
    """The relay module or package that a dotted name comes from: its longest known prefix."""
    modules = _relay_modules()
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _imports_in(path: Path) -> Iterator[Import]:
    importer = _dotted(path)
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the importing module's package upwards
                package = importer if path.name == "__init__.py" else importer.rpartition(".")[0]
                for _ in range(node.level - 1):
                    package = package.rpartition(".")[0]
                base = f"{package}.{base}".rstrip(".")
            names = [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            module = _provider(name) if name.split(".")[0] == "relay" else None
            yield Import(importer, name, module, path, node.lineno, ast.unparse(node))


@functools.cache
def relay_imports() -> tuple[Import, ...]:
    """Every import in relay/."""
    return tuple(i for path in sorted((ROOT / "relay").rglob("*.py")) for i in _imports_in(path))


def _arrows() -> Iterator[Import]:
    """Imports from one relay module to another, leaving out a module's own packages."""
    for imp in relay_imports():
        if imp.module is None or imp.module == imp.importer:
            continue
        if imp.importer.startswith(imp.module + "."):
            continue
        yield imp


def _within(module: str, roots: set[str]) -> bool:
    return any(module == root or module.startswith(root + ".") for root in roots)


def _layer(module: str) -> int | None:
    """The index of the module's layer in LAYERS (0 is the highest), None when unranked."""
    for index, (_, roots) in enumerate(LAYERS):
        if _within(module, roots):
            return index
    return None


def _circles(arrows: Iterable[Import]) -> list[list[Import]]:
    """For each group of modules that reach one another (Tarjan's strongly connected
    components), the imports among them."""
    edges: dict[str, list[Import]] = {}
    for imp in arrows:
        assert imp.module is not None
        edges.setdefault(imp.importer, []).append(imp)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for imp in edges.get(module, []):
            target = imp.module
            assert target is not None
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            group = set()
            while True:
                member = stack.pop()
                group.add(member)
                if member == module:
                    break
            if len(group) > 1:
                groups.append(group)

    for module in sorted(edges):
        if module not in index:
            visit(module)
    return [[i for m in sorted(group) for i in edges[m] if i.module in group] for group in groups]


def _one_circle(imports: list[Import]) -> str:
    """A shortest way round from the first module of a circle group, as `a -> b -> a`."""
    start = imports[0].importer
    ways = {start: [start]}
    queue = [start]
    for module in queue:
        for imp in imports:
            if imp.importer != module or imp.module is None:
                continue
            if imp.module == start:
                return " -> ".join([*ways[module], start])
            if imp.module not in ways:
                ways[imp.module] = [*ways[module], imp.module]
                queue.append(imp.module)
    raise AssertionError(f"no way back to {start}")  # a strongly connected group has one


def _listed(lines: Iterable[object]) -> str:
    """One per line, each once (a statement importing three names is one line)."""
    return "\n  " + "\n  ".join(dict.fromkeys(str(line) for line in lines))


def test_relay_modules_import_one_another_without_a_circle() -> None:
    """No relay module reaches itself through its imports."""
    circles = _circles(_arrows())
    assert not circles, "import circles:" + "".join(
        f"\n  {_one_circle(c)}, among these imports:" + _listed(c).replace("\n", "\n  ")
        for c in circles
    )


def test_nothing_imports_the_cli_but_python_m_relay() -> None:
    """`relay.cli` is the top: only `relay/__main__.py` (`python -m relay`) imports it, besides
    the modules of the `relay.cli` package itself."""
    found = [
        i
        for i in _arrows()
        if i.module is not None and _within(i.module, {"relay.cli"})
        if i.importer != "relay.__main__" and not _within(i.importer, {"relay.cli"})
    ]
    assert not found, "imports of relay.cli:" + _listed(found)


def test_only_the_cli_imports_the_demo() -> None:
    """Outside `relay/demo/`, only `relay.cli` imports `relay.demo`."""
    found = [
        i
        for i in _arrows()
        if i.module is not None and _within(i.module, {"relay.demo"})
        if not _within(i.importer, {"relay.demo", "relay.cli"})
    ]
    assert not found, "imports of relay.demo outside the demo and the CLI:" + _listed(found)


def test_tests_import_nothing_from_the_demo() -> None:
    """Tests run the demo as a process (`relay demo`) and import nothing from `relay.demo`."""
    found = [
        i
        for path in sorted((ROOT / "tests").rglob("*.py"))
        for i in _imports_in(path)
        if i.module is not None and _within(i.module, {"relay.demo"})
    ]
    assert not found, "tests importing relay.demo:" + _listed(found)


def test_progress_imports_neither_rich_nor_the_terminal() -> None:
    """`relay.progress` is a protocol the DLQ tools report through: it draws nothing."""
    found = [
        i
        for i in relay_imports()
        if i.importer == "relay.progress"
        if i.top == "rich" or (i.module is not None and _within(i.module, {"relay.terminal"}))
    ]
    assert not found, "relay.progress imports a display:" + _listed(found)


def test_no_import_runs_up_the_layers() -> None:
    """cli → commands → delivery → adapters and services → domain: no module imports from a
    layer above its own."""
    found: list[str] = []
    for imp in _arrows():
        assert imp.module is not None
        own, theirs = _layer(imp.importer), _layer(imp.module)
        if own is not None and theirs is not None and theirs < own:
            found.append(
                f"{imp}  ({LAYERS[own][0]} {imp.importer} imports {LAYERS[theirs][0]} {imp.module})"
            )
    assert not found, "imports running up the layers:" + _listed(found)


def test_domain_modules_import_no_aws_or_http_client_and_nothing_above_them() -> None:
    """`relay.message`, `relay.outcomes` and `relay.limits` import neither aiobotocore, botocore
    nor aiohttp, and from relay only one another and the error base."""
    found = [
        i
        for i in relay_imports()
        if i.importer in DOMAIN
        if i.top in CLIENT_LIBRARIES
        or (i.module is not None and not _within(i.module, DOMAIN | SHARED_BY_ALL))
    ]
    assert not found, "domain modules importing beyond the domain:" + _listed(found)


def test_no_module_is_over_500_lines() -> None:
    """Each relay module stays within MAX_LINES, bar the listed ones until they are split."""
    lengths = {
        str(path.relative_to(ROOT)): len(path.read_text(encoding="utf-8").splitlines())
        for path in sorted((ROOT / "relay").rglob("*.py"))
    }
    too_long = [
        f"{name}: {n} lines"
        for name, n in lengths.items()
        if n > MAX_LINES and name not in LONG_FOR_NOW
    ]
    assert not too_long, f"modules over {MAX_LINES} lines:\n  " + "\n  ".join(too_long)
    done = [name for name in LONG_FOR_NOW if lengths.get(name, 0) <= MAX_LINES]
    assert not done, f"within {MAX_LINES} lines now (or gone): take off LONG_FOR_NOW: {done}"


def test_the_reading_resolves_names_to_modules_and_finds_a_circle() -> None:
    """The checks above can fail: names resolve to the module or package that provides them,
    and a circle of three made-up imports is found."""
    assert _provider("relay.sqs.receive_messages") == "relay.sqs"
    assert _provider("relay.dlq.scan.ReadEnd") == "relay.dlq.scan"
    assert _provider("relay.DISTRIBUTION") == "relay"
    assert _layer("relay.dlq.replay") == 1
    assert _layer("relay.config") is None

    def arrow(importer: str, module: str) -> Import:
        path = ROOT / "relay" / "__init__.py"
        return Import(importer, module, module, path, 1, f"import {module}")

    made_up = [arrow("a", "b"), arrow("b", "c"), arrow("c", "a"), arrow("c", "d")]
    circles = _circles(made_up)
    assert [[(i.importer, i.module) for i in c] for c in circles] == [
        [("a", "b"), ("b", "c"), ("c", "a")]
    ]
    assert _one_circle(circles[0]) == "a -> b -> c -> a"
