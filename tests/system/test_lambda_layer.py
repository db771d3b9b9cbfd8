"""`make lambda-layer` builds a zip from which a bare Python with botocore imports the producer."""

import importlib.util
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EVENT = REPO / "examples" / "custom-step-event-s3.json"
HEAVY = ("aiohttp", "aiobotocore", "click", "rich", "structlog", "prometheus_client", "tenacity")
RUNTIME = ("botocore", "jmespath", "dateutil", "six", "urllib3")
"""botocore and what it imports: what a Lambda Python runtime ships besides boto3."""

LAMBDA = """
import importlib.util, json, sys
layer, runtime, event_file = sys.argv[1:4]
site = [p for p in sys.path if "site-packages" in p]
sys.path[:0] = [layer, runtime]
heavy = [name for name in {heavy!r} if importlib.util.find_spec(name) is not None]
import relay
from relay.producer import Status, StepResult, StepResultPublisher, custom_step, message_for
result = StepResult.from_event(json.load(open(event_file)), Status.SUCCESS)
message = message_for(result.to_body(), fifo=True, result=result)
# A publisher makes its botocore client (from the runtime's botocore) and sends nothing.
publisher = StepResultPublisher("http://127.0.0.1:9/123456789012/results.fifo")
publisher.close()
handler = custom_step(queue_url=publisher.queue_url)(lambda event, context: None)
print(json.dumps({{
    "site_packages_before": site,
    "heavy_importable": heavy,
    "relay_file": relay.__file__,
    "relay_modules": sorted(m for m in sys.modules if m.split(".")[0] == "relay"),
    "module_files": sorted(
        m.__file__ for name, m in sys.modules.items()
        if name.split(".")[0] == "relay" and getattr(m, "__file__", None)
    ),
    "group_id": message.group_id,
    "execution_id": result.execution_id,
    "wrapped": handler.__name__,
}}))
"""


def _runtime_dir(root: Path) -> Path:
    """A directory holding only botocore and its dependencies (symlinks into this venv)."""
    runtime = root / "runtime"
    runtime.mkdir()
    for name in RUNTIME:
        spec = importlib.util.find_spec(name)
        assert spec is not None, f"{name} is not installed in the test venv"
        assert spec.origin is not None
        origin = Path(spec.origin)
        source = origin.parent if origin.name == "__init__.py" else origin
        (runtime / source.name).symlink_to(source, target_is_directory=source.is_dir())
    return runtime


@pytest.mark.slow
def test_the_layer_alone_imports_the_producer_without_the_workers_dependencies(
    tmp_path: Path,
) -> None:
    """The zip `make lambda-layer` writes holds python/relay/ with exactly the modules
    `import relay.producer` loads, and a Python that sees only that layer and botocore (no
    aiohttp, no aiobotocore) imports the producer from it and builds results and a publisher."""
    out = tmp_path / "relay-layer.zip"
    built = subprocess.run(
        ["make", "--no-print-directory", "-s", "lambda-layer", f"LAMBDA_LAYER={out}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    with zipfile.ZipFile(out) as archive:
        names = archive.namelist()
        # Lambda extracts a layer to /opt and puts /opt/python on sys.path.
        archive.extractall(tmp_path / "opt")
    assert names, "the layer is empty"
    assert all(name.startswith("python/relay/") and name.endswith(".py") for name in names)
    layer = tmp_path / "opt" / "python"

    # -I: no environment, no user site, no script directory; -S: not even the venv's
    # site-packages. What the code then finds is the standard library, the layer and botocore.
    result = subprocess.run(
        [
            sys.executable,
            "-I",
            "-S",
            "-c",
            LAMBDA.format(heavy=HEAVY),
            str(layer),
            str(_runtime_dir(tmp_path)),
            str(EVENT),
        ],
        env={"AWS_REGION": "us-east-1", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["site_packages_before"] == []
    assert seen["heavy_importable"] == []
    assert Path(seen["relay_file"]) == layer / "relay" / "__init__.py"
    assert all(Path(file).is_relative_to(layer) for file in seen["module_files"])
    packaged = {
        name.removeprefix("python/").removesuffix(".py").removesuffix("/__init__").replace("/", ".")
        for name in names
    }
    # Nothing it does not need: every module in the zip is one the import loaded, and back.
    assert packaged == set(seen["relay_modules"])
    assert "relay.producer" in packaged
    assert seen["group_id"] == seen["execution_id"]
    assert seen["wrapped"] == "<lambda>"


def test_the_layer_build_refuses_a_module_level_import_lambda_lacks(tmp_path: Path) -> None:
    """A producer module that imports a worker dependency at module level fails the build
    with one line naming the module and the import, instead of a layer that cannot import."""
    source = tmp_path / "src"
    package = source / "relay"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text('"""relay."""\n')
    (package / "producer.py").write_text("import json\n\nfrom relay import message\n")
    (package / "message.py").write_text(
        "from typing import TYPE_CHECKING\n\nimport structlog\n\n"
        "if TYPE_CHECKING:\n    import aiobotocore\n\n\ndef later() -> None:\n    import aiohttp\n"
    )
    code = (
        "import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]);"
        "import lambda_layer as layer\n"
        "try:\n    layer.build(Path(sys.argv[2]) / 'x.zip', Path(sys.argv[3]))\n"
        "except layer.LayerError as exc:\n    print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(REPO / "deploy"), str(tmp_path), str(source)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "relay.message imports structlog at module level, which a Lambda Python runtime does "
        "not have: relay.producer must need only botocore"
    )
    assert not (tmp_path / "x.zip").exists()
