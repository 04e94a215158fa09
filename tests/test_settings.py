"""One Settings: flags > environment > agentmem.toml > defaults, with the model and its server as a pair.

Each test starts from a clean slate: no ``AGENTMEM_*`` variable, a working
directory of its own (so no ``./agentmem.toml``) and an empty user config dir.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agentmem.config import DEFAULT_RECALL_BUDGET, DEFAULT_REPLY_TOKENS, load_settings
from agentmem.errors import ConfigError, ModelError


@pytest.fixture
def clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for var in list(os.environ):
        if var.startswith("AGENTMEM_"):
            monkeypatch.delenv(var)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("AGENTMEM_CACHE", "0")  # no LLM disk cache opened by the clients built here
    return tmp_path


def _toml(where: Path, text: str) -> None:
    (where / "agentmem.toml").write_text(text, encoding="utf-8")


# -- precedence ----------------------------------------------------------------------------
# (setting, flag value, env value, toml text, expected from flag / env / toml / default)
LAYERS = [
    (
        "model",
        "openai/gpt-4o-mini",
        "hosted_vllm/Qwen/Qwen3-8B",
        'model = "local/qwen2.5-coder-1.5b"\n',
        ["openai/gpt-4o-mini", "hosted_vllm/Qwen/Qwen3-8B", "local/qwen2.5-coder-1.5b", "local"],
    ),
    ("recall_budget", 64, "128", "recall_budget = 256\n", [64, 128, 256, DEFAULT_RECALL_BUDGET]),
    ("max_reply_tokens", 100, "200", "max_reply_tokens = 300\n", [100, 200, 300, DEFAULT_REPLY_TOKENS]),
    ("embedding_backend", "auto", "numpy", 'embedding_backend = "onnx"\n', ["auto", "numpy", "onnx", "auto"]),
    ("embedding_threads", 1, "2", "embedding_threads = 3\n", [1, 2, 3, 0]),
    ("share_server", False, "on", "share_server = false\n", [False, True, False, True]),
    ("embedding_cache", False, "on", "embedding_cache = false\n", [False, True, False, True]),
]


@pytest.mark.parametrize(("name", "flag", "env", "toml", "expected"), LAYERS, ids=[row[0] for row in LAYERS])
def test_flag_beats_env_beats_toml_beats_default(
    clean: Path, monkeypatch: pytest.MonkeyPatch, name: str, flag: object, env: str, toml: str, expected: list[object]
) -> None:
    assert getattr(load_settings(), name) == expected[3]
    _toml(clean, toml)
    assert getattr(load_settings(), name) == expected[2]
    monkeypatch.setenv(f"AGENTMEM_{name.upper()}", env)
    assert getattr(load_settings(), name) == expected[1]
    assert getattr(load_settings(**{name: flag}), name) == expected[0]
    assert getattr(load_settings(**{name: None}), name) == expected[1]  # None is "flag not given"


def test_cache_dir_precedence_and_every_reader_follows_it(clean: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from agentmem.config import cache_dir
    from agentmem.embeddings import default_cache_dir as embeddings_cache
    from agentmem.llm.models import default_cache_dir as models_cache
    from agentmem.llm.server import _registry_dir
    from agentmem_environments.locomo import default_data_path
    from agentmem_environments.longmemeval import default_cache_dir as longmemeval_cache
    from agentmem_environments.memoryagentbench import default_cache_dir as mab_cache
    from agentmem_environments.textworld import cache_root

    assert load_settings().cache_dir == clean / "xdg-cache" / "agentmem"
    _toml(clean, 'cache_dir = "from-toml"\n')
    assert load_settings().cache_dir == clean / "from-toml"  # relative to the file
    readers = [cache_dir, embeddings_cache, models_cache, lambda: _registry_dir().parent]
    assert {reader() for reader in readers} == {clean / "from-toml"}  # the TOML file is honoured by all of them
    assert default_data_path().parent.parent == clean / "from-toml"
    assert {longmemeval_cache().parent.parent, mab_cache().parent.parent, cache_root().parent} == {clean / "from-toml"}
    monkeypatch.setenv("AGENTMEM_CACHE_DIR", str(clean / "from-env"))
    assert {reader() for reader in readers} == {clean / "from-env"}
    assert load_settings(cache_dir=clean / "from-flag").cache_dir == clean / "from-flag"


# -- what used to be read from the environment alone -----------------------------------------
#: path settings that were environment variables alone; the variable keeps its name (AGENTMEM_<SETTING>)
PATH_SETTINGS = [
    "server_registry",
    "embedding_cache",
    "locomo_data",
    "longmemeval_data",
    "memoryagentbench_data",
    "bfcl_dir",
]


def _fake_bfcl_install(root: Path) -> Path:
    """A folder that looks like a ``pip install --target`` of bfcl-eval (the two files agentmem checks)."""
    checked = (
        ("bfcl_eval", "data", "BFCL_v4_memory.json"),
        ("bfcl_eval", "eval_checker", "agentic_eval", "agentic_checker.py"),
    )
    for parts in checked:
        root.joinpath(*parts).parent.mkdir(parents=True, exist_ok=True)
        root.joinpath(*parts).write_text("{}", encoding="utf-8")
    return root


def _readers() -> dict[str, object]:
    """What each path setting is for, read the way agentmem reads it."""
    from agentmem.embedding_cache import default_store
    from agentmem.llm.server import _registry_dir
    from agentmem_environments.bfcl.install import find_bfcl
    from agentmem_environments.longmemeval import LongMemEvalEnvironment
    from agentmem_environments.memoryagentbench import MemoryAgentBenchEnvironment

    def store() -> Path | None:
        found = default_store()
        return None if found is None else found.directory

    return {
        "server_registry": _registry_dir,
        "embedding_cache": store,
        "longmemeval_data": lambda: LongMemEvalEnvironment().data_path(),
        "memoryagentbench_data": lambda: MemoryAgentBenchEnvironment().data_path(),
        "bfcl_dir": lambda: find_bfcl(install=False)[0],
    }


@pytest.mark.parametrize("name", PATH_SETTINGS)
def test_former_environment_variables_are_settings_with_the_same_names(
    clean: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """Each one: flag > AGENTMEM_<NAME> > agentmem.toml (relative to the file) > default, and its reader follows."""
    (clean / "conf").mkdir()
    if name == "bfcl_dir":
        _fake_bfcl_install(clean / "conf" / "from-toml")
        _fake_bfcl_install(clean / "from-env")
    monkeypatch.setenv("AGENTMEM_CONFIG", str(clean / "conf" / "agentmem.toml"))
    (clean / "conf" / "agentmem.toml").write_text(f'{name} = "from-toml"\n', encoding="utf-8")
    assert getattr(load_settings(), name) == clean / "conf" / "from-toml"
    monkeypatch.setenv(f"AGENTMEM_{name.upper()}", str(clean / "from-env"))
    assert getattr(load_settings(), name) == clean / "from-env"
    assert getattr(load_settings(**{name: clean / "from-flag"}), name) == clean / "from-flag"
    reader = _readers().get(name)
    if reader is not None:
        assert reader() == clean / "from-env"  # type: ignore[operator]
        monkeypatch.delenv(f"AGENTMEM_{name.upper()}")
        assert reader() == clean / "conf" / "from-toml"  # type: ignore[operator]


def test_locomo_data_setting_picks_the_file(clean: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from agentmem_environments.locomo import LocomoEnvironment
    from agentmem_environments.locomo.demo import DEMO_PATH

    _toml(clean, f'locomo_data = "{DEMO_PATH}"\n')
    assert LocomoEnvironment().source == str(DEMO_PATH)
    monkeypatch.setenv("AGENTMEM_LOCOMO_DATA", str(clean / "missing.json"))
    with pytest.raises(Exception, match="missing.json"):
        LocomoEnvironment().source  # noqa: B018 - reading the source loads the data
    assert LocomoEnvironment(data=str(DEMO_PATH)).source == str(DEMO_PATH)  # --data beats the setting


def test_embedder_and_server_switches_follow_the_settings(clean: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import agentmem.embeddings as emb
    from agentmem.embedding_cache import default_store
    from agentmem.llm.server import _sharing

    _toml(clean, 'embedding_backend = "numpy"\nembedding_threads = 2\nshare_server = false\nembedding_cache = "off"\n')
    assert emb._resolve_backend(None) == "numpy" and emb._resolve_threads(None) == 2
    assert _sharing() is False and default_store() is None
    monkeypatch.setenv("AGENTMEM_SHARE_SERVER", "1")
    monkeypatch.setenv("AGENTMEM_EMBEDDING_THREADS", "0")
    assert _sharing() is True and emb._resolve_threads(None) is None
    assert emb._resolve_backend("onnx") == "onnx"  # an argument beats the setting


@pytest.mark.parametrize(
    ("variable", "value", "accepted"),
    [
        ("AGENTMEM_EMBEDDING_BACKEND", "gpu", "auto, onnx, numpy"),
        ("AGENTMEM_EMBEDDING_THREADS", "-1", "greater than or equal to 0"),
        ("AGENTMEM_SHARE_SERVER", "maybe", "valid boolean"),
    ],
)
def test_a_bad_switch_is_one_line_naming_its_variable(
    clean: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, accepted: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert f"unset {variable}" in str(err.value) and accepted in str(err.value) and "\n" not in str(err.value)


#: environment variables read outside agentmem.config, and why they are not settings
NOT_SETTINGS = {
    "HF_HUB_OFFLINE": "Hugging Face's own switch, honoured as its libraries do",
    "HF_ENDPOINT": "Hugging Face's own mirror address",
    "OPENAI_API_KEY": "litellm's provider key, read to tell an unauthenticated server from a missing key",
    "AGENTMEM_SANDBOX_LOG_FD": "set by the evolution sandbox for its worker alone",
}


def test_agentmem_reads_no_environment_variable_behind_the_settings_back() -> None:
    """Every ``os.environ`` / ``os.getenv`` read outside agentmem/config.py is a variable listed in NOT_SETTINGS."""
    import ast

    root = Path(__file__).resolve().parent.parent
    patterns = (
        "agentmem/**/*.py",
        "plugins/*/agentmem_*/**/*.py",
        "environments/agentmem_environments/**/*.py",
        "evolve/agentmem_evolve/**/*.py",
    )
    sources = [p for pattern in patterns for p in root.glob(pattern)]
    assert len(sources) > 50
    found: list[str] = []
    for path in sources:
        if path == root / "agentmem" / "config.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            name = None
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
                target = ast.unparse(node.func)
                if target in ("os.environ.get", "os.getenv", "os.environ.pop"):
                    name = node.args[0]
            elif (
                isinstance(node, ast.Subscript)
                and isinstance(node.ctx, ast.Load)
                and ast.unparse(node.value) == "os.environ"
            ):
                name = node.slice
            if name is None:
                continue
            text = name.value if isinstance(name, ast.Constant) else ast.unparse(name)
            if text not in NOT_SETTINGS:
                found.append(f"{path.relative_to(root)}:{node.lineno} reads {text}")
    assert not found, f"make these settings (agentmem/config.py) or list them in NOT_SETTINGS: {found}"


# -- the model and its server --------------------------------------------------------------
def test_api_base_travels_with_its_model(clean: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _toml(clean, 'model = "hosted_vllm/toml-model"\napi_base = "http://toml:8000/v1"\napi_key = "toml-key"\n')
    s = load_settings()
    assert (s.model, s.api_base, s.api_key) == ("hosted_vllm/toml-model", "http://toml:8000/v1", "toml-key")

    monkeypatch.setenv("AGENTMEM_API_BASE", "http://env:8000/v1")  # a higher layer may move the same model
    s = load_settings()
    assert (s.model, s.api_base, s.api_key) == ("hosted_vllm/toml-model", "http://env:8000/v1", "toml-key")

    monkeypatch.setenv("AGENTMEM_MODEL", "hosted_vllm/env-model")  # another model: the file's key stays behind
    s = load_settings()
    assert (s.model, s.api_base, s.api_key) == ("hosted_vllm/env-model", "http://env:8000/v1", None)

    s = load_settings(model="openai/gpt-4o-mini")  # a flag's model inherits nothing from below
    assert (s.model, s.api_base, s.api_key) == ("openai/gpt-4o-mini", None, None)
    s = load_settings(model="hosted_vllm/flag-model", api_base="http://flag:8000/v1")
    assert (s.model, s.api_base) == ("hosted_vllm/flag-model", "http://flag:8000/v1")
    s = load_settings(model="hosted_vllm/env-model")  # the same model as the environment's keeps its server
    assert s.api_base == "http://env:8000/v1"

    monkeypatch.delenv("AGENTMEM_MODEL")
    (clean / "agentmem.toml").unlink()
    s = load_settings(model="hosted_vllm/flag-model")  # a server written for no model in particular is kept
    assert (s.model, s.api_base) == ("hosted_vllm/flag-model", "http://env:8000/v1")


def test_llm_with_a_model_does_not_inherit_an_api_base_set_for_another(
    clean: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agentmem.llm import LLM

    monkeypatch.setenv("AGENTMEM_MODEL", "hosted_vllm/Qwen/Qwen3-8B")
    monkeypatch.setenv("AGENTMEM_API_BASE", "http://gpu:8000/v1")
    monkeypatch.setenv("AGENTMEM_API_KEY", "vllm-key")
    configured = LLM()
    assert (configured.model, configured.api_base, configured.api_key) == (
        "hosted_vllm/Qwen/Qwen3-8B",
        "http://gpu:8000/v1",
        "vllm-key",
    )
    other = LLM("openai/gpt-4o-mini")
    assert (other.model, other.api_base, other.api_key) == ("openai/gpt-4o-mini", None, None)
    same = LLM("hosted_vllm/Qwen/Qwen3-8B")
    assert same.api_base == "http://gpu:8000/v1"  # the configured model keeps its server
    given = LLM("openai/gpt-4o-mini", settings=load_settings())  # explicit settings: the same rule
    assert given.api_base is None and given.api_key is None


def test_local_means_the_configured_local_model(clean: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from agentmem.llm import LLM

    assert load_settings(model="local").model == "local"
    _toml(clean, 'model = "local/qwen2.5-coder-1.5b"\n')
    assert load_settings(model="local").model == "local/qwen2.5-coder-1.5b"
    assert LLM("local").model == "local/qwen2.5-coder-1.5b"
    (clean / "agentmem.toml").unlink()
    monkeypatch.setenv("AGENTMEM_MODEL", "openai/gpt-4o-mini")  # a remote model is not a local one: "local" stays
    assert load_settings(model="local").model == "local"


def test_agent_resolves_its_model_budget_and_reply_length_from_settings(
    clean: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agentmem import Agent

    _toml(clean, 'model = "local/qwen2.5-coder-1.5b"\nrecall_budget = 300\nmax_reply_tokens = 200\n')
    with Agent(store_dir=clean / "a") as agent:  # no model given: the configured one
        assert agent.model == "local/qwen2.5-coder-1.5b"
        assert (agent.budget_tokens, agent.max_reply_tokens) == (300, 200)
    with Agent(model="local", store_dir=clean / "b") as agent:  # "local": the configured local model
        assert agent.model == "local/qwen2.5-coder-1.5b"
    monkeypatch.setenv("AGENTMEM_MODEL", "hosted_vllm/Qwen/Qwen3-8B")
    monkeypatch.setenv("AGENTMEM_API_BASE", "http://gpu:8000/v1")
    monkeypatch.setenv("AGENTMEM_RECALL_BUDGET", "400")
    with Agent(store_dir=clean / "c", budget_tokens=50) as agent:  # env beats the file, the argument beats env
        assert (agent.model, agent.llm.api_base) == ("hosted_vllm/Qwen/Qwen3-8B", "http://gpu:8000/v1")
        assert agent.budget_tokens == 50
    with Agent(model="openai/gpt-4o-mini", store_dir=clean / "d") as agent:
        assert agent.llm.api_base is None and agent.budget_tokens == 400
    with Agent(store_dir=clean / "e") as agent:
        agent.set_model("openai/gpt-4o-mini")
        assert agent.model == "openai/gpt-4o-mini" and agent.llm.api_base is None


def test_evolve_run_config_takes_models_and_budget_from_settings(clean: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from agentmem_evolve.config import RunConfig

    minimal = {"environment": {"name": "toolprefs"}, "seeds": ["episodic"]}
    cfg = RunConfig.from_dict(minimal)
    assert (cfg.models.task, cfg.models.mutation, cfg.environment.budget_tokens) == (
        "local",
        "local",
        DEFAULT_RECALL_BUDGET,
    )

    _toml(clean, 'model = "local/qwen2.5-coder-1.5b"\n')
    cfg = RunConfig.from_dict({**minimal, "models": {"task": "local"}})
    assert cfg.models.task == "local/qwen2.5-coder-1.5b"  # task = "local" honours the configured local model

    monkeypatch.setenv("AGENTMEM_MODEL", "hosted_vllm/Qwen/Qwen3-8B")
    monkeypatch.setenv("AGENTMEM_API_BASE", "http://gpu:8000/v1")
    monkeypatch.setenv("AGENTMEM_RECALL_BUDGET", "512")
    cfg = RunConfig.from_dict(minimal)
    assert (cfg.models.task, cfg.models.api_base) == ("hosted_vllm/Qwen/Qwen3-8B", "http://gpu:8000/v1")
    assert cfg.models.mutation == "hosted_vllm/Qwen/Qwen3-8B" and cfg.environment.budget_tokens == 512
    assert cfg.models.mutation_api_base == "http://gpu:8000/v1"
    named = RunConfig.from_dict({**minimal, "models": {"mutation": "openai/gpt-4o-mini"}})
    assert named.models.api_base == "http://gpu:8000/v1"  # the task model keeps its server...
    assert (named.models.mutation, named.models.mutation_api_base) == ("openai/gpt-4o-mini", None)  # ...not the other
    shared = RunConfig.from_dict(
        {**minimal, "models": {"task": "hosted_vllm/a", "mutation": "hosted_vllm/b", "api_base": "http://box:8000/v1"}}
    )
    assert shared.models.mutation_api_base == "http://box:8000/v1"  # a config's api_base serves both, as before
    # the run directory's copy records the resolved names: a resume under other settings keeps them
    path = clean / "run.toml"
    cfg.write(path)
    monkeypatch.setenv("AGENTMEM_MODEL", "openai/gpt-4o-mini")
    monkeypatch.delenv("AGENTMEM_RECALL_BUDGET")
    assert RunConfig.load(path) == cfg

    monkeypatch.setenv("AGENTMEM_MODEL", "hosted_vllm/Qwen/Qwen3-8B")
    cfg = RunConfig.from_dict({**minimal, "models": {"task": "openai/gpt-4o-mini"}})
    assert cfg.models.api_base is None  # the environment's api base was for another model
    assert (cfg.models.mutation, cfg.models.mutation_api_base) == ("hosted_vllm/Qwen/Qwen3-8B", "http://gpu:8000/v1")


# -- the embedding model path ---------------------------------------------------------------
def test_embedding_model_path_setting_is_read(clean: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from agentmem.embeddings import locate_embedding_model

    (clean / "minilm").mkdir()
    _toml(clean, 'embedding_model_path = "minilm"\n')
    with pytest.raises(ModelError) as err:  # the configured directory is used alone, not the cache or a download
        locate_embedding_model(allow_download=False)
    assert str(clean / "minilm") in str(err.value) and "embedding_model_path" in str(err.value)
    monkeypatch.setenv("AGENTMEM_EMBEDDING_PATH", str(clean / "other"))
    with pytest.raises(ModelError, match="other"):
        locate_embedding_model(allow_download=False)


# -- unknown options ---------------------------------------------------------------------------
def test_unknown_settings_name_the_option_and_the_accepted_ones(clean: Path) -> None:
    _toml(clean, 'model = "local"\nrecal_budget = 12\n')
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert "recal_budget" in str(err.value) and "recall_budget" in str(err.value) and "\n" not in str(err.value)
    (clean / "agentmem.toml").unlink()
    with pytest.raises(ConfigError) as err:
        load_settings(modle="local")
    assert "modle" in str(err.value) and "model" in str(err.value).replace("modle", "")


def test_bad_budget_names_its_source(clean: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTMEM_RECALL_BUDGET", "lots")
    with pytest.raises(
        ConfigError, match="recall_budget.*environment variable AGENTMEM_RECALL_BUDGET.*unset AGENTMEM_RECALL_BUDGET"
    ):
        load_settings()


def test_make_environment_refuses_options_it_would_have_dropped(clean: Path) -> None:
    from agentmem.evaluation import make_environment

    with pytest.raises(ConfigError) as err:
        make_environment("arc", data="somewhere.json", seed=1)
    message = str(err.value)
    assert "'arc'" in message and "data (--data)" in message and "seed" in message and "curriculum" in message
    with pytest.raises(ConfigError, match="judge_model"):
        make_environment("locomo", judge_model="openai/gpt-4o")
    assert make_environment("arc", seed=2, data=None, judge_model=None).seed == 2  # None: not given


def test_the_settings_page_lists_every_setting() -> None:
    from agentmem.config import Settings

    page = (Path(__file__).resolve().parent.parent / "docs" / "settings.md").read_text(encoding="utf-8")
    missing = [name for name in Settings.model_fields if f"| `{name}` |" not in page]
    assert not missing, f"docs/settings.md lacks {missing}"


def test_whether_anyone_chose_the_model_is_known(clean: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A purpose with a default of its own (conversation) may use it only where no layer named a model."""
    assert "model" not in load_settings().model_fields_set
    assert "model" in load_settings(model="local").model_fields_set
    monkeypatch.setenv("AGENTMEM_MODEL", "local")
    assert "model" in load_settings().model_fields_set
