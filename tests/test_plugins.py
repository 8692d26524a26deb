"""Adapters come through entry points: a separately installed package is found by name."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

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
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(target),
            str(PACKAGE),
        ],
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
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(installed_toy), **env},
    )
    assert result.returncode == 0, result.stderr
    adapters = result.stdout.strip()
    assert '"dit"' in adapters and '"toy"' not in adapters


def test_builtin_adapters_register_through_entry_points_like_any_plugin():
    from importlib import metadata

    ours = [ep for ep in metadata.entry_points(group="smoothcache.adapters") if ep.dist and ep.dist.name == "smoothcache"]
    assert {ep.name for ep in ours} >= {"dit", "stable-audio", "opensora", "families"}
    sources = {entry.adapter.name: entry.source for entry in smoothcache.plugins.registry().entries()}
    for entry_point in ours:
        provided = {adapter.name for adapter in entry_point.load().smoothcache_adapters()}
        assert provided and all(sources[name] == "built-in" for name in provided), entry_point.name


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

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        registry.register(Plugin(), name="bad-plugin")
        registry.register(Raising(), name="raising-plugin")
    messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert any("'bad-plugin'" in m and "not a ModelAdapter" in m for m in messages)
    assert any("'raising-plugin'" in m and "missing dependency" in m for m in messages)
    assert "dit" in registry.names() and "broken" not in registry.names()


class NamedAdapter:
    """A minimal adapter whose ``name`` is whatever the test needs (the engine never runs it here)."""

    def __init__(self, name: object) -> None:
        self.name = name

    def matches(self, model) -> bool:
        return False

    def components(self, model) -> list:
        return []

    def step_source(self, model):
        return smoothcache.ForwardArgument("timestep")


class RaisingNameAdapter(NamedAdapter):
    def __init__(self) -> None:
        pass

    @property
    def name(self) -> str:
        raise RuntimeError("name is broken")


class HookReturning:
    """A plugin object whose hook returns ``value`` (or, for a generator function, what it yields)."""

    def __init__(self, value) -> None:
        self.value = value

    @smoothcache.hookimpl
    def smoothcache_adapters(self):
        return self.value() if callable(self.value) else self.value


def yields_one_then_raises():
    yield NamedAdapter("half-provided")
    raise RuntimeError("generator broke part-way")


BAD_HOOK_RESULTS = {
    "returns-an-int": (7, "returned an int, not a list"),
    "returns-a-dict": ({"dict-adapter": NamedAdapter("dict-adapter")}, "returned a dict, not a list"),
    "returns-a-string": ("toy", "returned a str, not a list"),
    "raising-generator": (yields_one_then_raises, "generator broke part-way"),
}


@pytest.mark.parametrize("plugin_name", list(BAD_HOOK_RESULTS))
def test_a_hook_returning_a_non_list_or_raising_part_way_is_named_and_skipped(plugin_name):
    value, reason = BAD_HOOK_RESULTS[plugin_name]
    registry = AdapterRegistry()
    with pytest.warns(UserWarning):
        registry.register(HookReturning(value), name=plugin_name)
    registry.register(HookReturning([NamedAdapter("after-the-bad-one")]), name="good-plugin")
    assert {"dit", "after-the-bad-one"} <= set(registry.names())
    assert not {"half-provided", "dict-adapter", "t", "o", "y"} & set(registry.names())  # nothing of a bad plugin
    [problem] = registry.problems
    assert f"plugin {plugin_name!r} (runtime)" in problem and reason in problem and "\n" not in problem, problem


def test_a_hook_returning_none_or_a_generator_provides_its_adapters_quietly():
    registry = AdapterRegistry()
    registry.register(HookReturning(None), name="nothing")
    registry.register(HookReturning(lambda: (NamedAdapter(name) for name in ("gen-a", "gen-b"))), name="generator")
    assert {"gen-a", "gen-b"} <= set(registry.names()) and registry.problems == []


@pytest.mark.parametrize(
    ("adapter", "reason"),
    [
        (RaisingNameAdapter(), "name is broken"),
        (NamedAdapter(3), "name is an int, not a str"),
        (NamedAdapter(""), "empty"),
        (NamedAdapter("my model"), "whitespace"),
        (NamedAdapter("tab\tname"), "whitespace"),
    ],
    ids=["name-raises", "name-not-str", "name-empty", "name-with-space", "name-with-tab"],
)
def test_an_adapter_with_a_bad_name_is_named_and_skipped_and_its_siblings_load(adapter, reason):
    registry = AdapterRegistry()
    with pytest.warns(UserWarning):
        registry.register(HookReturning([adapter, NamedAdapter("sibling")]), name="bad-names")
    assert "sibling" in registry.names() and "dit" in registry.names()
    [problem] = registry.problems
    assert "plugin 'bad-names' (runtime)" in problem and reason in problem and "\n" not in problem, problem


def test_an_adapter_whose_matches_raises_is_treated_as_no_match():
    class RaisingMatch(NamedAdapter):
        def matches(self, model) -> bool:
            raise RuntimeError("matches is broken")

    class MatchesLinear(NamedAdapter):
        def matches(self, model) -> bool:
            return isinstance(model, torch.nn.Linear)

    registry = AdapterRegistry()
    registry.register(HookReturning([RaisingMatch("raising-match"), MatchesLinear("linear")]), name="detection")
    assert registry.detect(torch.nn.Linear(2, 2)).name == "linear" and "raising-match" in registry.names()


class FakeEntryPoint:
    """An installed plugin's entry point without installing anything: ``load()`` returns ``plugin``."""

    def __init__(self, name: str, plugin: object) -> None:
        self.name, self.value, self.plugin = name, f"fake_{name.replace('-', '_')}", plugin
        self.dist = SimpleNamespace(name="smoothcache-bad-plugins", version="0.1")

    def load(self) -> object:
        return self.plugin


@pytest.fixture
def bad_entry_points(monkeypatch):
    """Bad plugins that sort before a good one, so a failure that escapes would stop the good one loading."""
    from importlib import metadata

    installed = [
        FakeEntryPoint("a-int", HookReturning(7)),
        FakeEntryPoint("b-generator", HookReturning(yields_one_then_raises)),
        FakeEntryPoint("c-bad-name", HookReturning([RaisingNameAdapter()])),
        FakeEntryPoint("z-good", HookReturning([NamedAdapter("z-adapter")])),
    ]
    real = metadata.entry_points

    def entry_points(**kwargs):
        found = list(real(**kwargs))
        return found + installed if kwargs.get("group") == "smoothcache.adapters" else found

    monkeypatch.setattr(metadata, "entry_points", entry_points)


def test_bad_entry_point_plugins_are_named_and_the_others_load(bad_entry_points):
    registry = AdapterRegistry()
    with pytest.warns(UserWarning):
        names = registry.names()
    assert {"dit", "stable-audio", "opensora", "z-adapter"} <= set(names) and "half-provided" not in names
    plugins = ("a-int", "b-generator", "c-bad-name")
    assert len(registry.problems) == len(plugins)
    for problem, plugin in zip(registry.problems, plugins, strict=False):
        assert problem.startswith(f"plugin {plugin!r} (smoothcache-bad-plugins 0.1) "), problem


def test_the_adapters_command_lists_the_good_adapters_and_prints_the_problems(bad_entry_points, monkeypatch, capsys):
    from smoothcache.cli import main

    monkeypatch.setattr(sys.modules["smoothcache.plugins.registry"], "_REGISTRY", None)  # a fresh process-wide one
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # printed once as "warning: ...", not also as a Python warning
        assert main(["adapters"]) == 0
    out, err = capsys.readouterr()
    assert "dit" in out and "built-in" in out and "z-adapter" in out and "smoothcache-bad-plugins 0.1" in out
    problems = err.strip().splitlines()
    assert len(problems) == 3 and all(line.startswith("warning: plugin '") for line in problems), err
    assert "'a-int'" in problems[0] and "generator broke part-way" in problems[1] and "name is broken" in problems[2]


def test_the_generic_diffusers_adapter_serves_a_new_model_and_yields_to_any_other_match():
    """A diffusers model no family knows is served by the ``diffusers`` fallback, found by structure;
    an adapter registered for it (a third party's) is chosen over the fallback."""
    from diffusers import ModelMixin
    from diffusers.models.attention import BasicTransformerBlock

    class NewDenoiser(ModelMixin):
        def __init__(self) -> None:
            super().__init__()
            self.transformer_blocks = torch.nn.ModuleList(BasicTransformerBlock(16, 2, 8) for _ in range(2))

        def forward(self, hidden_states: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
            for block in self.transformer_blocks:
                hidden_states = block(hidden_states)
            return hidden_states

    torch.manual_seed(0)
    model = NewDenoiser().eval()
    sample = torch.randn(1, 4, 16)
    assert smoothcache.resolve_adapter(model, None).name == "diffusers"
    with smoothcache.wrap(model, schedule={"attn1": [1, 0], "ff": [1, 0]}) as handle, torch.no_grad():
        for t in (900.0, 800.0):
            model(sample, torch.tensor([t]))
        assert [c.key for c in handle.components] == [f"transformer_blocks.{i}.{name}" for i in range(2) for name in ("attn1", "ff")]
        assert handle.stats()["reused"] == 4

    class Theirs(NamedAdapter):
        def matches(self, model) -> bool:
            return isinstance(model, NewDenoiser)

    registry = AdapterRegistry()
    registry.register(HookReturning([Theirs("theirs")]), name="third-party")
    assert registry.detect(model).name == "theirs"
