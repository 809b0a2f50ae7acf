"""Shared by the tests: the example and research scripts, loaded as modules."""

import importlib.util
import pathlib

SCRIPTS = pathlib.Path(__file__).resolve().parent.parent / "scripts"


def script(name):
    """``scripts/<name>.py`` as a module, so a test can call its ``main(argv)``."""
    spec = importlib.util.spec_from_file_location(f"script_{name}", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
