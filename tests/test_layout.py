"""The tree tells the story: imports flow one way, public names load lazily, importing prints nothing."""

import ast
import pathlib
import subprocess
import sys

import deepcache
import deepcache.pipelines
import deepcache.tuning

PACKAGE = pathlib.Path(deepcache.__file__).parent

# What each folder may import from the package (besides itself): the product's layers, then the instruments.
ALLOWED = {
    "schedules": set(),
    "models": set(),
    "runtime": {"models", "schedules"},
    "measurement": {"models", "schedules", "runtime"},
    "pipelines": {"models", "schedules", "runtime"},
    "ldm": {"models", "schedules", "runtime", "pipelines"},
    "tuning": {"models", "schedules", "runtime", "measurement", "pipelines"},
    "embedded": set(),
    "testing": {"models", "pipelines", "ldm"},  # the class-conditional LDM's parts that diffusers lacks
    "evaluation": {
        "models",
        "schedules",
        "runtime",
        "measurement",
        "pipelines",
        "ldm",
        "tuning",
        "embedded",
        "testing",
    },
}


def _imported_folders(path: pathlib.Path) -> set[str]:
    """The package folders a module imports from (relative and absolute imports)."""
    module_parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    folders = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = module_parts[: len(module_parts) - node.level]
                target = [*base, *(node.module.split(".") if node.module else [])]
            else:
                target = (node.module or "").split(".")
            targets = [target] if node.module else [[*target, alias.name] for alias in node.names]
        elif isinstance(node, ast.Import):
            targets = [alias.name.split(".") for alias in node.names]
        else:
            continue
        folders |= {t[1] for t in targets if len(t) > 1 and t[0] == "deepcache"}
    return folders


def test_imports_flow_one_way():
    violations = []
    for folder, allowed in ALLOWED.items():
        for path in sorted((PACKAGE / folder).glob("*.py")):
            wrong = _imported_folders(path) - allowed - {folder, "_lazy"}
            violations += [f"{path.relative_to(PACKAGE)} imports deepcache.{w}" for w in sorted(wrong)]
    assert violations == []


def test_every_module_lives_in_a_folder():
    assert sorted(p.name for p in PACKAGE.glob("*.py")) == ["__init__.py", "__main__.py", "_lazy.py"]
    assert sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()) == sorted(ALLOWED)


def test_each_folder_says_what_lives_there():
    for folder in ALLOWED:
        docstring = ast.get_docstring(ast.parse((PACKAGE / folder / "__init__.py").read_text()))
        assert docstring and len(docstring.split("\n\n")[0].splitlines()) == 2, folder  # a two-line summary first


def test_public_names_resolve_and_match_what_type_checkers_see():
    for package in (deepcache, deepcache.pipelines, deepcache.tuning):
        tree = ast.parse(pathlib.Path(package.__file__).read_text())
        checked = next(n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING")
        seen = sorted(alias.name for node in checked.body for alias in node.names)
        assert seen == package.__all__
        for name in package.__all__:
            assert getattr(getattr(package, name), "__name__", name) == name  # constants such as CIN256_V2 have no name
            assert name in dir(package)


def test_import_is_light_and_silent():
    """``import deepcache`` loads neither diffusers nor transformers and prints nothing; the DDPM demo's
    pipeline brings no transformers warnings either."""
    code = (
        "import sys, deepcache; assert 'diffusers' not in sys.modules and 'transformers' not in sys.modules;"
        "from deepcache import DeepCacheDDPMPipeline, DeepCacheConfig; assert 'transformers.models.clip' not in "
        "sys.modules"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout == result.stderr == ""
