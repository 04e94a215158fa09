"""Hostile input to every `agentmem` command: one line, exit status 2, no traceback, nothing written.

A table of bad inputs covers every subcommand (``eval``, ``chat``, ``serve``,
``plugin new``/``plugins new``, ``plugins list``, ``models``, ``evolve
run/resume/status/report/export``); hypothesis then combines bad values with
others for ``eval`` and ``evolve run``. Commands run in-process through
typer's ``CliRunner`` (what the console script runs), a few through a real
subprocess. Every run happens in a throwaway home, cache and working
directory whose every file is listed before and after: a bad input may not
leave anything behind. No input here is valid, so no model is ever called.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from agentmem.cli.main import _register_extensions, app

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module", autouse=True)
def _with_extensions() -> None:
    """`agentmem evolve` arrives through the agentmem.cli entry point, as for the console script."""
    if not any(group.name == "evolve" for group in app.registered_groups):
        _register_extensions()


class Place:
    """A throwaway home, cache, config and working directory, with fixtures a hostile input can point at."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cwd = root / "cwd"
        self.cwd.mkdir()
        self.env = {
            "HOME": str(root / "home"),
            "XDG_DATA_HOME": str(root / "data"),
            "XDG_CACHE_HOME": str(root / "cache"),
            "XDG_CONFIG_HOME": str(root / "config"),
            "AGENTMEM_HOME": str(root / "agentmem-home"),
            "AGENTMEM_CACHE_DIR": str(root / "agentmem-cache"),
            "AGENTMEM_CONFIG": "",
            "AGENTMEM_MODEL": "",
            "AGENTMEM_API_BASE": "",
            "LOCOMO_DATA": "",
            "COLUMNS": "200",
        }
        c = self.cwd
        (c / "a-file").write_text("not a directory\n")
        (c / "a-dir").mkdir()
        (c / "bad.toml").write_text('seeds = ["episodic"\n[environment\n')
        (c / "dup.toml").write_text('seeds = ["episodic"]\nseeds = ["rag"]\n[environment]\nname = "toolprefs"\n')
        (c / "badvalue.toml").write_text('[environment]\nname = "toolprefs"\nminibatch = what\n')
        (c / "binary.toml").write_bytes(b"\xff\xfe\x00garbage\x00")
        (c / "empty.toml").write_text("")
        (c / "unknown-env-key.toml").write_text('seeds = ["episodic"]\n[environment]\nname = "toolprefs"\nfoo = 1\n')
        (c / "unknown-top.toml").write_text('seeds = ["episodic"]\ncolour = "red"\n[environment]\nname = "toolprefs"\n')
        (c / "seeds-string.toml").write_text('seeds = "episodic"\n[environment]\nname = "toolprefs"\n')
        (c / "env-value.toml").write_text('seeds = ["episodic"]\nenvironment = 5\n')
        (c / "negative.toml").write_text(
            'seeds = ["episodic"]\n[environment]\nname = "toolprefs"\n[budget]\niterations = -1\n'
        )
        (c / "test-select.toml").write_text(
            'seeds = ["episodic"]\n[environment]\nname = "toolprefs"\nselect_split = "test"\n'
        )
        (c / "bad-option.toml").write_text(
            'seeds = ["episodic"]\n[environment]\nname = "toolprefs"\n[environment.options]\nusers = "many"\n'
        )
        (c / "unknown-option.toml").write_text(
            'seeds = ["episodic"]\n[environment]\nname = "locomo"\n[environment.options]\ncolour = 1\n'
        )
        (c / "unknown-seed.toml").write_text('seeds = ["nosuch-plugin"]\n[environment]\nname = "toolprefs"\n')
        (c / "broken_seed.py").write_text("class Broken(:\n    pass\n")
        (c / "broken.json").write_text("{not json")
        # a run directory as `evolve run` leaves it (config and archive), nothing scored yet
        from agentmem_evolve.archive import Archive
        from agentmem_evolve.config import RunConfig

        run = c / "a-run"
        RunConfig.from_dict({"seeds": ["episodic"], "environment": {"name": "toolprefs"}}).write(run / "config.toml")
        Archive(run).close()
        broken_run = c / "broken-run"
        broken_run.mkdir()
        (broken_run / "config.toml").write_text("seeds = [\n")
        (c / "config-only").mkdir()
        (c / "config-only" / "x.txt").write_text("x")

    def listing(self) -> dict[str, tuple[int, int]]:
        """Every path under the root, with size and modification time for files."""
        out = {}
        for path in sorted(self.root.rglob("*")):
            info = path.lstat()
            out[str(path.relative_to(self.root))] = (info.st_size, info.st_mtime_ns) if path.is_file() else (0, 0)
        return out


@pytest.fixture(scope="module")
def place(tmp_path_factory: pytest.TempPathFactory) -> Place:
    return Place(tmp_path_factory.mktemp("cli-fuzz"))


@pytest.fixture
def inside(place: Place, monkeypatch: pytest.MonkeyPatch) -> Iterator[Place]:
    monkeypatch.chdir(place.cwd)
    for key, value in place.env.items():
        monkeypatch.setenv(key, value) if value else monkeypatch.delenv(key, raising=False)
    yield place


def assert_refused(place: Place, args: list[str], extra_env: dict[str, str] | None = None) -> str:
    """Run ``agentmem *args`` in-process: exit status 2, one ``error:`` line, no traceback, no file touched."""
    before = place.listing()
    env = {**{k: v for k, v in place.env.items() if v}, **(extra_env or {})}
    result = CliRunner().invoke(app, args, env=env, catch_exceptions=True)
    after = place.listing()
    shown = f"agentmem {' '.join(args)!r}:\nstdout: {result.stdout!r}\nstderr: {result.stderr!r}"
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{shown}\nraised {type(result.exception).__name__}: {result.exception}"
    )
    assert "Traceback" not in result.output, shown
    assert result.exit_code == 2, shown
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), shown
    assert after == before, f"{shown}\nchanged on disk: {sorted(set(after.items()) ^ set(before.items()))}"
    return lines[0]


# -- a table of hostile inputs, one or more per subcommand -------------------------------------------
HOSTILE: list[tuple[list[str], str]] = [
    # eval: flags, parameters, names, paths, settings
    (["eval", "--budget", "-5"], "--budget"),
    (["eval", "--budget", "abc"], "--budget"),
    (["eval", "--limit", "0"], "--limit"),
    (["eval", "--seed", "x"], "--seed"),
    (["eval", "-p", "top_k=abc"], "top_k"),
    (["eval", "-p", "top_k=0"], "from 1 to 50"),
    (["eval", "-p", "top_k=1e9"], "top_k"),
    (["eval", "-p", "top_k=[1, 2]"], "top_k"),
    (["eval", "-p", "nosuchparam=1"], "nosuchparam"),
    (["eval", "-p", "=3"], "key=value"),
    (["eval", "-p", "noequals"], "key=value"),
    (["eval", "--memory", "semantic", "-p", "recency_weight=-1"], "recency_weight"),
    (["eval", "--split", "dev"], "--split"),
    (["eval", "--env", ""], "--env"),
    (["eval", "--env", ",,,"], "--env"),
    (["eval", "--env", "nosuch"], "nosuch"),
    (["eval", "--env", "toolprefs,toolprefs"], "twice"),
    (["eval", "--env", "locomo,nosuch"], "nosuch"),
    (["eval", "--memory", ""], "--memory"),
    (["eval", "--memory", "+"], "--memory"),
    (["eval", "--memory", "nosuch"], "nosuch"),
    (["eval", "--memory", "missing.py"], "missing.py"),
    (["eval", "--memory", "broken_seed.py"], "broken_seed.py"),
    (["eval", "--env", "locomo", "--data", "missing.json"], "missing.json"),
    (["eval", "--env", "locomo", "--data", "broken.json"], "broken.json"),
    (["eval", "--env", "toolprefs", "--data", "users=0"], "users"),
    (["eval", "--env", "toolprefs", "--data", "nosuchknob=1"], "nosuchknob"),
    (["eval", "--env", "textworld", "--seed", "500"], "seed"),
    (["eval", "--env", "arc", "--data", "puzzles.json"], "data (--data)"),  # once silently dropped
    (["eval", "--env", "arc", "--judge-model", "openai/gpt-4o"], "judge_model"),
    (["eval", "--out", "a-dir"], "--out"),
    (["eval", "--out", "a-file/result.json"], "a-file"),
    (["eval", "--out-dir", "a-file"], "--out-dir"),
    (["eval", "--memory", "none,episodic", "--out", "x.json"], "--out"),
    (["eval", "--model", "local/nosuch"], "nosuch"),
    (["eval", "--model", " "], "model"),
    (["eval", "--bogus"], "--bogus"),
    # chat: nothing may be created before the input is known good
    (["chat", "--memory", "nonexistent", "--store-dir", "store"], "nonexistent"),
    (["chat", "--memory", "missing.py"], "missing.py"),
    (["chat", "--thread", "two words"], "thread"),
    (["chat", "--user", " "], "--user"),
    (["chat", "--store-dir", "a-file"], "--store-dir"),
    (["chat", "--model", "local/nosuch", "--store-dir", "store"], "nosuch"),
    # plugin new (and its alias under plugins)
    (["plugin", "new", "Bad Name"], "Bad Name"),
    (["plugin", "new", ""], "plugin name"),
    (["plugin", "new", "agentmem-x"], "agentmem-"),
    (["plugin", "new", "../evil"], "../evil"),
    (["plugin", "new", "x" * 60], "at most"),
    (["plugin", "new", "episodic"], "already installed"),
    (["plugin", "new", "notes", "--dir", "a-file"], "a-file"),
    (["plugin", "new", "notes", "--dir", "a-file/sub"], "a-file"),
    (["plugins", "new", "Bad Name"], "Bad Name"),
    (["plugin", "new"], "Missing argument"),
    (["plugins", "list", "--bogus"], "--bogus"),
    # models
    (["models", "pull", "nosuch"], "nosuch"),
    (["models", "pull", "--path", "missing.gguf"], "missing.gguf"),
    (["models", "verify", "nosuch"], "nosuch"),
    (["models", "list", "extra"], "extra"),
    # serve: refused before any server starts
    (["serve", "--backend", "x"], "--backend"),
    (["serve", "--port", "0"], "--port"),
    (["serve", "--port", "70000"], "--port"),
    (["serve", "--port", "http"], "--port"),
    (["serve", "--parallel", "0"], "--parallel"),
    (["serve", "--n-ctx", "10"], "--n-ctx"),
    (["serve", "--threads", "0"], "--threads"),
    (["serve", "--gpu-memory-utilization", "2"], "--gpu-memory-utilization"),
    (["serve", "--startup-timeout", "0"], "--startup-timeout"),
    (["serve", "--log", "a-dir"], "--log"),
    (["serve", "--model", "nosuch-model"], "nosuch-model"),
    (["serve", "--model", "missing.gguf"], "missing.gguf"),
    # evolve run: the config file
    (["evolve", "run", "-c", "bad.toml"], "line 2, column 1"),
    (["evolve", "run", "-c", "dup.toml"], "line 2"),
    (["evolve", "run", "-c", "badvalue.toml"], "line 3"),
    (["evolve", "run", "-c", "binary.toml"], "binary.toml"),
    (["evolve", "run", "-c", "empty.toml"], "environment"),
    (["evolve", "run", "-c", "unknown-env-key.toml"], "unknown key 'foo' in [environment]"),
    (["evolve", "run", "-c", "unknown-top.toml"], "colour"),
    (["evolve", "run", "-c", "seeds-string.toml"], "seeds"),
    (["evolve", "run", "-c", "env-value.toml"], "environment"),
    (["evolve", "run", "-c", "negative.toml"], "budget.iterations"),
    (["evolve", "run", "-c", "test-select.toml"], "select_split"),
    (["evolve", "run", "-c", "bad-option.toml"], "users"),
    (["evolve", "run", "-c", "unknown-option.toml"], "colour"),
    (["evolve", "run", "-c", "unknown-seed.toml"], "nosuch-plugin"),
    (["evolve", "run", "-c", "missing.toml"], "missing.toml"),
    (["evolve", "run", "-c", "a-dir"], "a-dir"),
    # evolve run: flags
    (["evolve", "run"], "environment"),
    (["evolve", "run", "--env", "nosuch"], "nosuch"),
    (["evolve", "run", "--env", "toolprefs", "--seed", "nosuch"], "nosuch"),
    (["evolve", "run", "--env", "toolprefs", "--seed", "missing.py"], "missing.py"),
    (["evolve", "run", "--env", "toolprefs", "--seed", "broken_seed.py"], "broken_seed.py"),
    (["evolve", "run", "--env", "toolprefs", "--seed", "episodic", "--seed", "episodic"], "twice"),
    (["evolve", "run", "--env", "toolprefs", "--iterations", "-1"], "--iterations"),
    (["evolve", "run", "--env", "toolprefs", "--children", "0"], "--children"),
    (["evolve", "run", "--env", "toolprefs", "--strategy", "bogus"], "--strategy"),
    (["evolve", "run", "--env", "toolprefs", "--executor", "bogus"], "--executor"),
    (["evolve", "run", "--env", "toolprefs", "--max-tokens", "0"], "--max-tokens"),
    (["evolve", "run", "--env", "toolprefs", "--max-seconds", "-1"], "--max-seconds"),
    (["evolve", "run", "--env", "toolprefs", "--model", "local/nosuch"], "nosuch"),
    (["evolve", "run", "--env", "toolprefs", "--mutation-model", "local/nosuch"], "nosuch"),
    (["evolve", "run", "--env", "toolprefs", "--data", "users=0"], "users"),
    (["evolve", "run", "--env", "locomo", "--data", "missing.json"], "missing.json"),
    (["evolve", "run", "--env", "toolprefs", "--run-dir", "a-file"], "a-file"),
    (["evolve", "run", "--env", "toolprefs", "--run-dir", "a-run"], "already holds a run"),
    # evolve resume / status / report / export
    (["evolve", "resume", "nowhere"], "nowhere"),
    (["evolve", "resume", "a-file"], "a-file"),
    (["evolve", "resume", "config-only"], "not an evolution run"),
    (["evolve", "resume", "broken-run"], "broken-run/config.toml is not valid TOML"),
    (["evolve", "resume", "a-run", "--executor", "bogus"], "--executor"),
    (["evolve", "resume", "a-run", "--iterations", "-1"], "--iterations"),
    (["evolve", "status", "nowhere"], "nowhere"),
    (["evolve", "status", "a-file"], "a-file"),
    (["evolve", "status", "config-only"], "not an evolution run"),
    (["evolve", "report", "nowhere"], "nowhere"),
    (["evolve", "report", "a-run", "--out", "a-file/report.html"], "a-file"),
    (["evolve", "report", "a-run", "--out", "a-file"], "a-file"),
    (["evolve", "export", "a-run"], "--name"),
    (["evolve", "export", "a-run", "--name", "Bad Name"], "Bad Name"),
    (["evolve", "export", "a-run", "--name", ""], "plugin name"),
    (["evolve", "export", "a-run", "--name", "mine"], "no scored program"),
    (["evolve", "export", "a-run", "--name", "mine", "--program", "nosuch"], "nosuch"),
    (["evolve", "export", "a-run", "--name", "mine", "--out", "a-file"], "a-file"),
    (["evolve", "export", "nowhere", "--name", "mine"], "nowhere"),
    (["evolve", "nosuch"], "nosuch"),
    # the top level
    (["nosuch"], "nosuch"),
    (["--bogus"], "--bogus"),
]


@pytest.mark.parametrize(("args", "mentions"), HOSTILE, ids=[" ".join(a)[:60] for a, _ in HOSTILE])
def test_hostile_input_is_one_line_exit_2_and_writes_nothing(inside: Place, args: list[str], mentions: str) -> None:
    line = assert_refused(inside, args)
    assert mentions.lower() in line.lower(), f"{line!r} should name {mentions!r}"


def test_resume_with_a_bad_flag_leaves_the_run_config_as_it_was(inside: Place) -> None:
    config = inside.cwd / "a-run" / "config.toml"
    before = config.read_bytes()
    assert_refused(inside, ["evolve", "resume", "a-run", "--executor", "bogus"])
    assert config.read_bytes() == before


def test_a_toml_error_names_the_file_line_and_column(inside: Place) -> None:
    line = assert_refused(inside, ["evolve", "run", "-c", "bad.toml"])
    assert "bad.toml" in line and "line 2, column 1" in line and "fix the syntax" in line


@pytest.mark.parametrize(
    ("text", "mentions"),
    [
        ('model = "local"\nn_ctx = \n', "line 2, column 9"),
        ('model = "local"\ncolour = "red"\n', "colour"),
        ("n_ctx = 12\n", "n_ctx"),
    ],
    ids=["syntax", "unknown-key", "bad-value"],
)
@pytest.mark.parametrize(
    "command", [["eval"], ["chat"], ["evolve", "run", "--env", "toolprefs"]], ids=["eval", "chat", "evolve"]
)
def test_a_bad_settings_file_is_one_line(inside: Place, text: str, mentions: str, command: list[str]) -> None:
    settings_file = inside.root / "settings.toml"
    settings_file.write_text(text)
    line = assert_refused(inside, command, {"AGENTMEM_CONFIG": str(settings_file)})
    assert mentions in line and "settings.toml" in line, line


def test_a_parameter_error_names_the_plugin_the_parameter_and_its_bounds(inside: Place) -> None:
    line = assert_refused(inside, ["eval", "--memory", "episodic", "-p", "top_k=abc"])
    assert "'episodic'" in line and "top_k" in line and "from 1 to 50" in line and '"abc"' in line


# -- hypothesis: bad values mixed with others ---------------------------------------------------------
_JUNK = st.one_of(
    st.sampled_from(
        [
            "",
            " ",
            "-1",
            "0",
            "-0",
            "1e999",
            "nan",
            "inf",
            "NaN",
            "[]",
            "{}",
            "null",
            "\x00",
            "é",
            "../..",
            "/",
            "a-file",
            "a-dir",
            "a-file/x",
            "--",
            "-",
            "'",
            '"',
            "\\",
            "$HOME",
            "~",
        ]
    ),
    st.text(max_size=12).filter(lambda s: "\x00" not in s),
    st.integers(min_value=-(10**20), max_value=-1).map(str),
)
# one input that makes the command fail whatever else it is given
_EVAL_POISON = st.sampled_from(
    [
        ["--budget", "-1"],
        ["--limit", "0"],
        ["-p", "top_k=abc"],
        ["-p", "nosuchparam=1"],
        ["--split", "dev"],
        ["--memory", "nosuch"],
        ["--env", "nosuch"],
        ["--model", "local/nosuch"],
        ["--out", "a-dir"],
        ["--bogus"],
    ]
)
_EVAL_FLAGS = [
    "--env",
    "--memory",
    "--data",
    "--limit",
    "--split",
    "--budget",
    "--param",
    "--seed",
    "--out-dir",
    "--model",
]
_RUN_POISON = st.sampled_from(
    [
        ["--iterations", "-1"],
        ["--strategy", "bogus"],
        ["--seed", "nosuch"],
        ["-c", "bad.toml"],
        ["--executor", "x"],
        ["--run-dir", "a-file"],
        ["--env", "nosuch"],
        ["--children", "0"],
        ["--model", "local/nosuch"],
        ["--bogus"],
    ]
)
_RUN_FLAGS = [
    "--env",
    "--seed",
    "--data",
    "--iterations",
    "--children",
    "--minibatch",
    "--validation-limit",
    "--strategy",
    "--executor",
    "--concurrency",
    "--max-tokens",
    "--max-seconds",
    "--random-seed",
    "--model",
    "--mutation-model",
]


@st.composite
def _poisoned(draw: st.DrawFn, poisons: st.SearchStrategy[list[str]], flags: list[str]) -> list[str]:
    """Noise around one poison; the noise never repeats the poison's flag (a later value would replace it)."""
    poison = draw(poisons)
    others = [f for f in flags if f != poison[0]]
    pairs = draw(st.lists(st.tuples(st.sampled_from(others), _JUNK), max_size=4))
    noise = [x for pair in pairs for x in pair]
    return poison + noise if draw(st.booleans()) else noise + poison


@settings(max_examples=25, database=None, deadline=None, suppress_health_check=list(HealthCheck))
@given(args=_poisoned(_EVAL_POISON, _EVAL_FLAGS))
def test_eval_fuzz(inside: Place, args: list[str]) -> None:
    assert_refused(inside, ["eval", *args])


@settings(max_examples=25, database=None, deadline=None, suppress_health_check=list(HealthCheck))
@given(args=_poisoned(_RUN_POISON, _RUN_FLAGS))
def test_evolve_run_fuzz(inside: Place, args: list[str]) -> None:
    assert_refused(inside, ["evolve", "run", *args])


@settings(max_examples=15, database=None, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    command=st.sampled_from(
        [["evolve", "status"], ["evolve", "report"], ["evolve", "resume"], ["evolve", "export", "--name", "mine"]]
    ),
    target=_JUNK,
)
def test_evolve_run_dir_fuzz(inside: Place, command: list[str], target: str) -> None:
    if target.startswith("-"):
        target = "./" + target  # a value, not an option
    assert_refused(inside, [*command, target])


def _not_a_plugin_name(text: str) -> bool:
    from agentmem.errors import ConfigError
    from agentmem.scaffold import plugin_names

    try:
        plugin_names(text)
    except ConfigError:
        return True
    return False


@settings(max_examples=15, database=None, deadline=None, suppress_health_check=list(HealthCheck))
@given(name=_JUNK.filter(_not_a_plugin_name))
def test_plugin_new_fuzz(inside: Place, name: str) -> None:
    assert_refused(inside, ["plugin", "new", "--", name])


# -- the console script itself (a few real processes) --------------------------------------------------
@pytest.mark.parametrize(
    "args",
    [
        ["eval", "--budget", "-5"],
        ["evolve", "run", "-c", "bad.toml"],
        ["plugin", "new", "Bad Name"],
    ],
    ids=["eval", "evolve-run", "plugin-new"],
)
def test_the_console_script_answers_in_one_line(inside: Place, args: list[str]) -> None:
    before = inside.listing()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AGENTMEM_")},
        **{k: v for k, v in inside.env.items() if v},
    }
    proc = subprocess.run(
        [sys.executable, "-m", "agentmem.cli.main", *args],
        cwd=inside.cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert inside.listing() == before
