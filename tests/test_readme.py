"""README.md and the docs: the two commands CI runs, a README that fits on a screen, links that resolve,
and the usage snippets, run as written."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, re.S)


def test_readme_gives_the_commands_ci_runs():
    ci_command = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci_command in README
    assert "python -m deepcache" in README
    first = _blocks(README, "bash")[0]
    commands = [line for line in first.splitlines() if line and not line.startswith("#")]
    assert len(commands) == 2 and commands[1] == ci_command and commands[0].endswith("python -m deepcache")
    site = _blocks((ROOT / "docs" / "index.md").read_text(), "bash")[0]  # the site's adds how long, in brackets
    assert first == re.sub(r"# Install and run the tests \(.*\)\n", "# Install and run the tests\n", site)


def test_readme_fits_on_a_screen_and_its_links_resolve():
    assert len(README.splitlines()) <= 250
    links = re.findall(r"\]\(((?!https?://)[^)#]+)(?:#[^)]*)?\)", README)
    assert links and all((ROOT / link).is_file() for link in links), [
        link for link in links if not (ROOT / link).is_file()
    ]
    assert "shared/" not in README  # nothing outside a clone


def test_readme_usage_snippets_run_as_written():
    """The offline example on the embedded model, then the helper on the same pipeline."""
    snippets = _blocks(README, "python")
    namespace = {}
    exec(snippets[0], namespace)
    record = namespace["pipe"].deepcache_record  # PNDM's 50 steps are 51 loop iterations
    assert namespace["image"].size == (32, 32) and record.num_iterations == 51
    assert str(record).splitlines()[1] == "#.." * 17
    exec(snippets[1], namespace)
    assert namespace["image"].size == (32, 32) and not namespace["helper"].enabled
