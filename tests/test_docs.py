"""The README, the CI script and `pyuse --help` describe the same program."""

from pathlib import Path

from gateway.cli import build_parser

ROOT = Path(__file__).parent.parent


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci_command = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    test_line = next(line for line in readme.splitlines() if line.startswith("apt-get") and "pytest" in line)
    assert test_line.endswith(ci_command)


def test_every_command_is_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    commands = build_parser()._subparsers._group_actions[0].choices
    for name in commands:
        assert f"`pyuse {name}" in readme, f"README does not describe `pyuse {name}`"
