"""The original DeepCache 0.1.1 helper, loaded beside this package to compare against.

Its PyPI name normalizes to ours (``DeepCache`` == ``deepcache``), so the two cannot be installed
together: its one helper file is read from its wheel instead, given as a path or fetched from the
package registry (``pip download``).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from types import ModuleType

HELPER_IN_WHEEL = "DeepCache/extension/deepcache.py"


def fetch_original_wheel(directory: str | Path) -> Path:
    """Downloads the DeepCache 0.1.1 wheel into ``directory`` with pip; raises ``OSError`` if it cannot."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "-q",
        "-d",
        str(directory),
        "DeepCache==0.1.1",
    ]
    try:
        subprocess.run(command, check=True, capture_output=True, timeout=300)
        return next(Path(directory).glob("DeepCache-0.1.1-*.whl"))
    except (subprocess.SubprocessError, StopIteration) as error:
        raise OSError(f"could not fetch the DeepCache 0.1.1 wheel with pip: {error}") from error


def load_original_helper(source: str | Path | None = None) -> ModuleType:
    """The original helper module (it defines ``DeepCacheSDHelper``).

    ``source``: the DeepCache 0.1.1 wheel, or its ``deepcache.py`` helper file; ``None`` fetches the wheel.
    """
    directory = Path(tempfile.mkdtemp(prefix="original-deepcache-"))
    source = Path(source) if source is not None else fetch_original_wheel(directory)
    if source.suffix == ".whl":
        helper_file = directory / "original_deepcache_helper.py"
        with zipfile.ZipFile(source) as archive:
            helper_file.write_bytes(archive.read(HELPER_IN_WHEEL))
    elif source.suffix == ".py":
        helper_file = source
    else:
        raise ValueError(
            f"`source` must be the DeepCache 0.1.1 wheel (.whl) or its helper file (.py), but got {str(source)!r}."
        )
    spec = importlib.util.spec_from_file_location("original_deepcache_helper", helper_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
