#!/usr/bin/env bash
# The grids quoted in docs/evaluation.md for longmemeval and memoryagentbench: memory none and episodic
# on each environment's generated fixture (NOT the benchmarks), every split, the model from the settings
# (the embedded local model by default). Writes benchmarks/results/fixture-grid-<env>/ (grid.json, report.md, cells/).
set -euo pipefail
cd "$(dirname "$0")/.."
export LITELLM_LOCAL_MODEL_COST_MAP=True
ENVS=environments/agentmem_environments
AGENTMEM=${AGENTMEM:-"uv run --all-packages agentmem"}  # AGENTMEM=.venv/bin/agentmem skips uv's sync check
$AGENTMEM eval --env longmemeval --memory none,episodic --split all \
    --data "$ENVS/longmemeval/fixture_longmemeval.json" --out-dir benchmarks/results/fixture-grid-longmemeval "$@"
$AGENTMEM eval --env memoryagentbench --memory none,episodic --split all \
    --data "$ENVS/memoryagentbench/fixture_memoryagentbench.json" --out-dir benchmarks/results/fixture-grid-memoryagentbench "$@"
