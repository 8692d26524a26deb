"""Adapters come through entry points: a separately installed package is found by name."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import smoothcache
from smoothcache.plugins import AdapterRegistry

PACKAGE = Path(__file__).parent / "plugin_package"

USE_TOY = textwrap.dedent(
    """
    import json, torch, smoothcache
    from smoothcache_toy_adapter import ToyDenoiser
    model = ToyDenoiser().eval()
    x = torch.randn(2, 5, 16)
    @torch.no_grad()
    def sample():
        y = x
        for t in (900, 600, 300, 100):
            y = y - 0.1 * model(y, torch.tensor([t, t]))
        return y
    reference = sample()
    with smoothcache.wrap(model, schedule={"mix": [1, 0, 1, 1], "mlp": [1, 1, 0, 1]}) as handle:
        cached = sample()
    sources = {e.adapter.name: e.source for e in smoothcache.plugins.registry().entries()}
    print(json.dumps({"adapters": smoothcache.adapters(), "sources": sources, "adapter": handle.adapter.name,
                      "reused": handle.stats()["reused"], "changed": not torch.equal(reference, cached)}))
    """
)


@pytest.fixture(scope="module")
def installed_toy(tmp_path_factory) -> Path:
    """The toy adapter package installed with pip into its own folder (no network, no build isolation)."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(target), str(PACKAGE)],
        check=True,
        capture_output=True,
    )
    return target


def run_with(target: Path, **env: str) -> dict:
    import json

    environment = {**os.environ, "PYTHONPATH": str(target), **env}
    result = subprocess.run([sys.executable, "-c", USE_TOY], capture_output=True, text=True, env=environment, cwd=target)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_installed_package_is_found_by_name_and_used(installed_toy):
    result = run_with(installed_toy)
    assert "toy" in result["adapters"] and "dit" in result["adapters"]
    assert result["sources"]["toy"] == "smoothcache-toy-adapter 1.0"
    assert result["sources"]["dit"] == "built-in"
    assert result["adapter"] == "toy"  # auto-detected
    assert result["reused"] == 2 * 3
    assert result["changed"]


def test_autoload_can_be_disabled_for_third_party_plugins(installed_toy):
    env = {"SMOOTHCACHE_DISABLE_PLUGIN_AUTOLOAD": "1"}
    result = subprocess.run(
        [sys.executable, "-c", "import json, smoothcache; print(json.dumps(smoothcache.adapters()))"],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(installed_toy), **env},
    )
    assert result.returncode == 0, result.stderr
    adapters = result.stdout.strip()
    assert '"dit"' in adapters and '"toy"' not in adapters


def test_builtin_adapters_register_through_entry_points_like_any_plugin():
    from importlib import metadata

    ours = [ep for ep in metadata.entry_points(group="smoothcache.adapters") if ep.dist and ep.dist.name == "smoothcache"]
    assert {ep.name for ep in ours} >= {"dit"}
    assert set(smoothcache.adapters()) >= {ep.name for ep in ours}


def test_runtime_registration_and_bad_plugins_are_reported_by_name():
    registry = AdapterRegistry()

    class NotAnAdapter:
        name = "broken"

    class Plugin:
        @smoothcache.hookimpl
        def smoothcache_adapters(self):
            return [NotAnAdapter()]

    class Raising:
        @smoothcache.hookimpl
        def smoothcache_adapters(self):
            raise ImportError("missing dependency")

    with pytest.warns(UserWarning) as caught:
        registry.register(Plugin(), name="bad-plugin")
        registry.register(Raising(), name="raising-plugin")
    messages = [str(w.message) for w in caught]
    assert any("'bad-plugin'" in m and "not a ModelAdapter" in m for m in messages)
    assert any("'raising-plugin'" in m and "missing dependency" in m for m in messages)
    assert "dit" in registry.names() and "broken" not in registry.names()
