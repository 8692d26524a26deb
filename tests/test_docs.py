"""The documentation says what the code does: the adapter example is the tested plugin package word
for word, the command reference is the parser's own help, and every command it names exists."""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent
DOCS = ROOT / "docs"
sys.path.insert(0, str(ROOT / "scripts"))

import cli_reference  # noqa: E402  (a script, not a package)


def blocks(language: str) -> list[str]:
    section = (DOCS / "adapters.md").read_text().split("## Write an adapter for your model", 1)[1]
    return [block.strip() for block in re.findall(rf"```{language}\n(.*?)```", section, re.S)]


def test_adapter_example_is_the_tested_package():
    package = ROOT / "tests" / "plugin_package"
    assert blocks("python")[0] == (package / "smoothcache_toy_adapter.py").read_text().strip()
    assert blocks("toml")[0] == (package / "pyproject.toml").read_text().strip()


def test_command_reference_is_the_parsers_help():
    assert cli_reference.written() == cli_reference.reference().strip(), "docs/cli.md is stale: run python scripts/cli_reference.py"


def test_every_command_the_docs_name_exists():
    texts = [(ROOT / "README.md").read_text(), *(page.read_text() for page in DOCS.glob("*.md"))]
    for text in texts:
        for module in re.findall(r"python -m (benchmarks\.\w+)", text):
            assert (ROOT / (module.replace(".", "/") + ".py")).exists(), module
        for script in re.findall(r"python (scripts/\w+\.py)", text):
            assert (ROOT / script).exists(), script
    readme = texts[0]
    assert "make demo" in readme and "make test" in readme
