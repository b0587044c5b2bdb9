"""The README's variables table lists every environment variable the code reads (issue 14)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CODE = ("diffplatform", "experiments", "inference", "accounts", "bin")
# What reads a variable: django-environ (`env.str("X"`, `env("X"`), os.environ, our `env_int("X"` helpers.
READS = re.compile(
    r"""(?:\benv(?:\.\w+)?|os\.environ\.get|os\.getenv|environ\.get|\w*env_\w+)\(\s*["']([A-Z][A-Z0-9_]+)["']"""
    r"""|os\.environ\[\s*["']([A-Z][A-Z0-9_]+)["']\s*\]"""
)
NOT_SETTINGS = {"PYTHONHASHSEED"}  # written (seeding), never read as configuration


def variables_read() -> set[str]:
    found = set()
    for folder in CODE:
        for path in (ROOT / folder).rglob("*"):
            if path.suffix not in (".py", "") or not path.is_file() or "migrations" in path.parts:
                continue
            for match in READS.finditer(path.read_text(errors="ignore")):
                found.add(match.group(1) or match.group(2))
    return found - NOT_SETTINGS


def variables_documented() -> set[str]:
    readme = (ROOT / "README.md").read_text()
    table = [line for line in readme.splitlines() if line.startswith("| `")]
    return {name for line in table for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", line.split("|")[1])}


def test_the_scan_finds_the_variables_we_know_are_read():
    found = variables_read()
    assert {"DATABASE_URL", "REDIS_URL", "SECRET_KEY", "TORCH_HOME", "DIFFPLATFORM_DETECTOR_MODULES"} <= found


def test_every_variable_the_code_reads_is_in_the_readme_table():
    missing = sorted(variables_read() - variables_documented())
    assert not missing, f"add these to the README's variables table: {', '.join(missing)}"
