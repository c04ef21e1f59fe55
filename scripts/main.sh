#!/usr/bin/env bash
# The main job: install and build, then run the getting-started notebook headless with the
# bundled default model on the sample images (`clipn run`, the editor's kernel code), and
# write a self-contained HTML report (offline: renderer and plotly inside) and the notebook
# with its outputs.
#   CLIPN_MODEL=DIR   use another exported model folder instead of models/default
#   CLIPN_CACHE=DIR   where image embeddings are cached (default ~/.cache/clipn-lab)
#   CLIPN_REPORT=FILE the report (default build/getting-started.html)
#   CLIPN_OUT=FILE    the executed notebook (default build/getting-started.clipnb)
# Extra arguments are passed to `clipn run` (e.g. --providers cpu, --batch-size 16).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh

MODEL="${CLIPN_MODEL:-models/default}"
if [[ ! -f "$MODEL/clipn.json" ]]; then
  echo "main: no model at $MODEL (no clipn.json); build it with models/recipe or set CLIPN_MODEL to an exported model folder" >&2
  exit 1
fi
REPORT="${CLIPN_REPORT:-build/getting-started.html}"
OUT="${CLIPN_OUT:-build/getting-started.clipnb}"
status=0
node out/extension/cli/clipn.js run samples/getting-started.clipnb --model-folder "$MODEL" \
  --html "$REPORT" --out "$OUT" "$@" || status=$?
if [[ $status -le 1 && -f "$REPORT" ]]; then
  echo "report: $(realpath "$REPORT") (open it in a browser; it works offline)"
  echo "notebook with outputs: $(realpath "$OUT")"
fi
exit "$status"
