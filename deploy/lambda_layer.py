"""Builds the AWS Lambda layer for step processors: `relay.producer` and nothing it does not need.

    python deploy/lambda_layer.py --out dist/relay-layer.zip      (what `make lambda-layer` runs)

The zip holds `python/relay/...`, the layout Lambda puts on `sys.path` (as `/opt/python`) for a
Python layer. It carries the relay modules that `import relay.producer` loads, found by
following the module-level imports from `relay.producer`, and no dependency: the producer
needs only botocore, which every Lambda Python runtime ships. Imports inside functions are not
followed: they are the async publisher's (`relay.sqs`, aiobotocore), which a Lambda does not
use. The build refuses a module-level import of anything but the standard library, botocore
and relay, since the layer would then fail at import time. Entries are sorted and dated
1980-01-01, so the same sources give the same zip (and the same layer hash).

Only the standard library is used, so it runs before any venv exists.
"""

import argparse
import ast
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Final

REPO: Final = Path(__file__).resolve().parents[1]
ENTRY: Final = "relay.producer"
RUNTIME_PROVIDED: Final = frozenset({"botocore"})
"""Third-party packages every Lambda Python runtime ships (with boto3), so not packaged."""
LAYER_ROOT: Final = "python"
"""Lambda adds a Python layer's `python/` directory (extracted to /opt) to `sys.path`."""
ZIP_DATE: Final = (1980, 1, 1, 0, 0, 0)
"""The earliest date a zip entry can carry: fixed, so builds are byte-for-byte repeatable."""


class LayerError(Exception):
    """The layer cannot be built as asked: a module is missing or imports what Lambda lacks."""


def module_path(name: str, source_root: Path) -> Path:
    """The source file of a relay module (`relay.x` → `relay/x.py` or `relay/x/__init__.py`)."""
    base = source_root.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    raise LayerError(f"{name}: no such module under {source_root}")


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _module_level(body: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    """The import statements a module runs when imported: not in functions or classes, and not
    under `if TYPE_CHECKING:`."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                yield from _module_level(node.body)
            yield from _module_level(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody):
                yield from _module_level(block)
            for handler in node.handlers:
                yield from _module_level(handler.body)
        elif isinstance(node, ast.With):
            yield from _module_level(node.body)


def imported_names(name: str, source_root: Path) -> set[str]:
    """The absolute names of the modules one module imports at module level."""
    path = module_path(name, source_root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    names: set[str] = set()
    for node in _module_level(ast.parse(path.read_text(encoding="utf-8"), str(path)).body):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
            continue
        if node.level:
            parts = package.split(".")
            base = ".".join(parts[: len(parts) - node.level + 1])
            target = f"{base}.{node.module}" if node.module else base
        else:
            target = node.module or ""
        names.add(target)
        # `from relay import message` imports the submodule relay.message.
        for alias in node.names:
            candidate = f"{target}.{alias.name}"
            if candidate.startswith("relay.") and _exists(candidate, source_root):
                names.add(candidate)
    return names


def _exists(name: str, source_root: Path) -> bool:
    try:
        module_path(name, source_root)
    except LayerError:
        return False
    return True


def producer_modules(source_root: Path = REPO) -> list[str]:
    """The relay modules `import relay.producer` loads, parent packages included, sorted.

    Raises `LayerError` when one of them imports, at module level, a third-party package that
    Lambda runtimes do not ship.
    """
    found: set[str] = set()
    queue = [ENTRY]
    while queue:
        name = queue.pop()
        parts = name.split(".")
        # Importing a.b.c runs a/__init__.py and a/b/__init__.py first.
        for parent in (".".join(parts[:i]) for i in range(1, len(parts) + 1)):
            if parent in found:
                continue
            found.add(parent)
            for imported in imported_names(parent, source_root):
                top = imported.split(".")[0]
                if top == "relay":
                    queue.append(imported)
                elif top not in sys.stdlib_module_names and top not in RUNTIME_PROVIDED:
                    raise LayerError(
                        f"{parent} imports {imported} at module level, which a Lambda Python "
                        f"runtime does not have: relay.producer must need only botocore"
                    )
    return sorted(found)


def build(out: Path, source_root: Path = REPO) -> list[str]:
    """Writes the layer zip to `out`; returns the paths it holds."""
    files = sorted(
        module_path(name, source_root).relative_to(source_root)
        for name in producer_modules(source_root)
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    names = [f"{LAYER_ROOT}/{file.as_posix()}" for file in files]
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for file, name in zip(files, names, strict=True):
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16  # readable by Lambda's sandbox user
            archive.writestr(info, (source_root / file).read_bytes())
    return names


def main(argv: list[str] | None = None) -> int:
    """Builds the layer; prints what went in; exit 1 (one line on stderr) if it cannot."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="the zip to write")
    args = parser.parse_args(argv)
    try:
        names = build(args.out)
    except LayerError as exc:
        print(f"lambda layer: {exc}", file=sys.stderr)
        return 1
    size = args.out.stat().st_size
    print(f"{args.out}: {len(names)} files, {size} bytes")
    for name in names:
        print(f"  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
