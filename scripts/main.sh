#!/usr/bin/env bash
# The main job: install and build, then evaluate CLIPN zero-shot OOD detection on the sample
# images with the bundled default model and print the paper-style table.
#   CLIPN_MODEL=DIR   evaluate another exported model folder instead of models/default
#   CLIPN_CACHE=DIR   where image embeddings are cached (default ~/.cache/clipn-lab)
# Extra arguments are passed to `clipn eval` (e.g. --json out.json, --providers cpu).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh

MODEL="${CLIPN_MODEL:-models/default}"
if [[ ! -f "$MODEL/clipn.json" ]]; then
  echo "main: no model at $MODEL (no clipn.json); build it with models/recipe or set CLIPN_MODEL to an exported model folder" >&2
  exit 1
fi
exec node out/extension/cli/clipn.js eval --model "$MODEL" --id samples/images/id --ood samples/images/ood "$@"
