"""RunConfig: a minimal TOML is enough, mistakes are one clear line, and a written config reads back equal."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentmem.errors import ConfigError
from agentmem_evolve.config import RunConfig, dump_toml

MINIMAL = 'seeds = ["episodic"]\n\n[environment]\nname = "toolprefs"\n'


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.toml"
    path.write_text(text)
    return path


def test_a_minimal_file_gets_every_default(tmp_path):
    cfg = RunConfig.load(write(tmp_path, MINIMAL))
    assert cfg.environment.name == "toolprefs" and cfg.seeds == ["episodic"]
    assert cfg.environment.select_split == "validation" and cfg.environment.minibatch == 6
    assert cfg.selection.strategy == "pareto" and cfg.selection.descriptors == ["tokens", "recall_items"]
    assert cfg.proposers.weights == {"reflective": 0.5, "mutate": 0.3, "merge": 0.2}
    assert cfg.budget.iterations == 6 and cfg.budget.max_llm_tokens is None
    assert cfg.execution.executor == "local" and cfg.sandbox.memory_mb == 3072
    assert cfg.models.task == "local" and cfg.seed == 0


def test_written_config_reads_back_equal(tmp_path):
    text = MINIMAL + (
        '[environment.options]\nsessions = 3\nname_with_space = "a \\"quoted\\" value"\n'
        '[selection]\nstrategy = "islands"\nislands = 3\n'
        "[budget]\nmax_wall_seconds = 90.5\n"
        '[execution]\nexecutor = "ray"\n'
    )
    cfg = RunConfig.load(write(tmp_path, text))
    out = cfg.write(tmp_path / "run_dir" / "config.toml")
    again = RunConfig.load(out)
    assert again == cfg
    # the users a toolprefs run needs to size its splits (SPLIT_DEFAULTS) join the options given
    assert again.environment.options == {"users": 152, "sessions": 3, "name_with_space": 'a "quoted" value'}
    assert cfg.model_dump_toml() == cfg.to_toml()


def test_relative_paths_are_relative_to_the_config_file(tmp_path):
    (tmp_path / "progs").mkdir()
    text = 'seeds = ["episodic", "progs/mine.py"]\n[environment]\nname = "locomo"\ndata = "data/locomo.json"\n'
    cfg = RunConfig.load(write(tmp_path, text))
    assert cfg.seeds[0] == "episodic"
    assert cfg.seeds[1] == str((tmp_path / "progs" / "mine.py").resolve())
    assert cfg.environment.data == str((tmp_path / "data" / "locomo.json").resolve())


@pytest.mark.parametrize(
    "text, expected",
    [
        (MINIMAL + '[selection]\nstrategy = "best"\n', ["selection.strategy", '"best"', "pareto"]),
        (MINIMAL + "[selection]\ntemprature = 0.1\n", ["unknown key 'temprature'", "[selection]", "temperature"]),
        (MINIMAL + "iterations = 3\n", ["unknown key 'iterations'"]),
        ('[environment]\nname = "toolprefs"\n', ["missing key 'seeds'", "seeds = ["]),
        ('seeds = ["episodic"]\n', ["missing [environment]"]),
        ('seeds = []\n[environment]\nname = "x"\n', ["'seeds'"]),
        (MINIMAL + "[budget]\niterations = -1\n", ["budget.iterations", "-1"]),
        (MINIMAL + "[proposers]\nweights = {reflective = 1, rewrite = 1}\n", ["proposers.weights", "rewrite"]),
        (MINIMAL + "[proposers]\nweights = {reflective = 0}\n", ["weight > 0"]),
        (MINIMAL.replace('"toolprefs"', '"toolprefs"\nselect_split = "test"'), ["never selects on test"]),
        ("seeds = [\n", ["not valid TOML"]),
    ],
)
def test_mistakes_are_one_line_naming_the_file_and_the_key(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        RunConfig.load(path)
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg
    for part in expected:
        assert part in msg, msg


def test_a_missing_file_says_so(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        RunConfig.load(tmp_path / "nope.toml")


def test_toml_writer_handles_nested_tables_and_escapes():
    import tomllib

    data = {"a": 1, "s": 'line\nbreak \\ "q" é', "f": 0.1, "b": True, "l": [1, "x"], "t": {"x": {"y": [1.5]}, "z": "w"}}
    assert tomllib.loads(dump_toml(data)) == data
