from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_gives_the_commands_ci_runs():
    ci_command = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    readme = (ROOT / "README.md").read_text()
    assert ci_command in readme
    assert "python -m deepcache" in readme
