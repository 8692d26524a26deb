"""The README's adapter example is the code the plugin test installs and runs, word for word."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parent.parent


def blocks(language: str) -> list[str]:
    section = (ROOT / "README.md").read_text().split("### Write an adapter for your model", 1)[1]
    return [block.strip() for block in re.findall(rf"```{language}\n(.*?)```", section, re.S)]


def test_adapter_example_is_the_tested_package():
    package = ROOT / "tests" / "plugin_package"
    assert blocks("python")[0] == (package / "smoothcache_toy_adapter.py").read_text().strip()
    assert blocks("toml")[0] == (package / "pyproject.toml").read_text().strip()


def test_readme_commands_exist():
    text = (ROOT / "README.md").read_text()
    for module in re.findall(r"python -m (benchmarks\.\w+)", text):
        assert (ROOT / (module.replace(".", "/") + ".py")).exists(), module
    assert "make demo" in text and "make test" in text
