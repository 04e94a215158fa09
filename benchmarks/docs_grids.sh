#!/usr/bin/env bash
# The grids quoted in docs/evaluation.md's environment sections (locomo, arc, textworld, bfcl-memory), each
# with the command the docs print, the model from the settings (the embedded local model by default).
# Writes benchmarks/results/docs-<env>/ (grid.json with its provenance, report.md, cells/). Resumes per cell.
# Extra arguments go to every `agentmem eval` (e.g. --model). About an hour on an idle 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/.."
export LITELLM_LOCAL_MODEL_COST_MAP=True
AGENTMEM=${AGENTMEM:-"uv run --all-packages agentmem"}  # AGENTMEM=.venv/bin/agentmem skips uv's sync check
OUT=benchmarks/results
$AGENTMEM eval --env locomo --memory none,full-context,rag,episodic,hierarchical \
    --data ../shared/data/locomo/locomo6.json --split validation --limit 20 --out-dir "$OUT/docs-locomo" "$@"
$AGENTMEM eval --env textworld --memory none,episodic,procedural --data "episodes=2,max_steps=8,tasks=2" \
    --split validation --out-dir "$OUT/docs-textworld" "$@"
$AGENTMEM eval --env bfcl-memory --memory none,full-context,episodic --split validation --limit 12 \
    --out-dir "$OUT/docs-bfcl-memory" "$@"
$AGENTMEM eval --env arc --memory none,full-context,episodic,procedural --split validation --limit 5 \
    --out-dir "$OUT/docs-arc" "$@"
