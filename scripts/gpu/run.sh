#!/usr/bin/env bash
# The GPU run of issue 7, on a machine without network or node (the device tool's GPU machine),
# from the repository root, with .gpu-pack and .gl carried (scripts/gpu/pack.sh makes both):
#
#   bash scripts/gpu/run.sh        # writes $OUT/report.txt, gpu.json, torch.json, log.txt, ...
#
# Steps, each with its own timeout inside one overall budget, so a hang costs one step, not
# the report:
#   0. unpack .gpu-pack/bundle.tar.xz into .gpu-run/ (node, onnxruntime-node, sharp, built code);
#      the CUDA provider from .gpu-cuda/pNN where pack.sh --cuda made it and earlier calls carried
#      the parts (checked against .gpu-pack/cuda.sha256), with the CUDA libraries of this
#      machine's PyTorch (its nvidia-* packages) on LD_LIBRARY_PATH; the Vulkan loader from
#      .gl/*.deb; nvidia-smi; the Vulkan ICDs found;
#   1. torch-compat probe: the project's exporter untouched on this machine's torch (micro
#      model), every graph checked against its PyTorch fixture in onnxruntime (Python, CPU);
#   2. export a random-weight ViT-B/16 CLIPN (fp32 + fp16 image graphs) with the TorchScript
#      exporter (scripts/gpu/export_random.py);
#   3. PyTorch eager baseline on the GPU: fp32/fp16, batch 64/128/256 (scripts/gpu/torch_bench.py);
#   4. the engine bench (out/bench/gpu.js): providers webgpu then cpu, ONNX only and end to
#      end from JPEG, for the ViT-B/16 folder and models/default if present;
#   5. the engine's unit tests that exercise providers (engine-model.test.js);
#   6. $OUT/report.txt (also in $OUT: gpu.json, torch.json, bench.txt, unit.txt, log.txt).
# Knobs (environment): CLIPN_GPU_BUDGET_S (default 470: the whole script), CLIPN_GPU_PYTHON,
# CLIPN_GPU_ARCH (ViT-B-16), CLIPN_GPU_PROVIDERS (cuda,cpu where the CUDA provider was installed,
# else webgpu,cpu), CLIPN_GPU_BATCHES (32,64,128,256),
# CLIPN_GPU_TORCH_BATCHES (64,128,256), CLIPN_GPU_E2E (2048 images), CLIPN_GPU_E2E_BATCH (128),
# CLIPN_GPU_CPU_BATCHES (16), CLIPN_GPU_TORCH_DEVICE (cuda), CLIPN_GPU_TORCH_HOST_BATCHES (128),
# CLIPN_GPU_NO_DPKG=1 (do not unpack .gl into /: for dry runs on a workstation),
# CLIPN_GPU_SKIP (step names to skip, space-separated: compat export torch bench unit),
# CLIPN_GPU_MODEL (an existing model folder: skips the export), CLIPN_GPU_WORK (/tmp/clipn-gpu).
# OUT defaults to /tmp/clipn-gpu-out where the device tool does not set it.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
T0=$(date +%s)
OUT=${OUT:-/tmp/clipn-gpu-out}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/log.txt") 2>&1
TEE_PID=$!

BUDGET=${CLIPN_GPU_BUDGET_S:-470}
PY=${CLIPN_GPU_PYTHON:-/opt/torch/.venv/bin/python3}
[[ -x "$PY" ]] || PY=$(command -v python3)
ARCH=${CLIPN_GPU_ARCH:-ViT-B-16}
BATCHES=${CLIPN_GPU_BATCHES:-32,64,128,256}
TORCH_BATCHES=${CLIPN_GPU_TORCH_BATCHES:-64,128,256}
E2E=${CLIPN_GPU_E2E:-2048}
E2E_BATCH=${CLIPN_GPU_E2E_BATCH:-128}
CPU_BATCHES=${CLIPN_GPU_CPU_BATCHES:-16}
SKIP=" ${CLIPN_GPU_SKIP:-} "
W=$ROOT/.gpu-run
WORK=${CLIPN_GPU_WORK:-/tmp/clipn-gpu}
MODEL=${CLIPN_GPU_MODEL:-$WORK/$(echo "$ARCH" | tr 'A-Z' 'a-z' | tr -d '-')}
NODE=$W/bin/node
TORCH_DEVICE=${CLIPN_GPU_TORCH_DEVICE:-cuda}
TORCH_HOST_BATCHES=${CLIPN_GPU_TORCH_HOST_BATCHES:-128}
export W NODE PY
export PYTHONPATH=$ROOT/models PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
export UV_THREADPOOL_SIZE=${UV_THREADPOOL_SIZE:-$(nproc)}
mkdir -p "$WORK"
rm -f "$WORK/compat.json" "$WORK/export.json"

STEPS=()
elapsed() { echo $(($(date +%s) - T0)); }
# step NAME NOMINAL_TIMEOUT RESERVE_FOR_LATER cmd...: runs cmd with min(nominal, budget left -
# reserve) seconds; records rc and duration. A step with under 10 s left is skipped. The
# step's own lines go to stderr, so a caller can redirect the command's stdout to a file.
step() {
  local name=$1 nominal=$2 reserve=$3
  shift 3
  if [[ "$SKIP" == *" $name "* ]]; then
    STEPS+=("$name: skipped (CLIPN_GPU_SKIP)")
    return 99
  fi
  local left=$((BUDGET - $(elapsed) - reserve))
  local t=$((nominal < left ? nominal : left))
  if ((t < 10)); then
    echo "=== [$name] skipped: only ${left}s of the ${BUDGET}s budget left" >&2
    STEPS+=("$name: skipped (budget)")
    return 98
  fi
  local s
  s=$(date +%s)
  echo >&2
  echo "=== [$name] start at $(elapsed)s, timeout ${t}s: $*" >&2
  timeout -k 5 "$t" "$@"
  local rc=$?
  local d=$(($(date +%s) - s))
  local what="rc=$rc"
  ((rc == 124 || rc == 137)) && what="TIMED OUT after ${t}s"
  echo "=== [$name] $what in ${d}s" >&2
  STEPS+=("$name: $what, ${d}s")
  return $rc
}

echo "clipn GPU run: $(date -u +%FT%TZ) on $(hostname), $(nproc) cores, budget ${BUDGET}s, python $PY"

# --- 0. unpack + environment ----------------------------------------------------------------
unpack() {
  [[ -f .gpu-pack/bundle.tar.xz ]] || { echo "no .gpu-pack/bundle.tar.xz: run scripts/gpu/pack.sh here and carry .gpu-pack"; return 1; }
  rm -rf "$W" && mkdir -p "$W" || return 1
  if command -v xz >/dev/null; then
    tar -xJf .gpu-pack/bundle.tar.xz -C "$W" || return 1
  else # no xz binary: Python's lzma reads the same filter chain (x86 BCJ + LZMA2)
    "$PY" -c "import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])" .gpu-pack/bundle.tar.xz "$W" || return 1
  fi
  ln -sfn ../models "$W/models" # the unit tests' REPO_ROOT is .gpu-run: they find models/ here
  "$NODE" -e "console.log('node', process.version, 'onnxruntime-node', require('$W/node_modules/onnxruntime-node/package.json').version, 'sharp', require('$W/node_modules/sharp/package.json').version)"
}
export -f unpack
step unpack 90 300 bash -c unpack || echo "cannot unpack: the node steps will fail"

# --- 0b. the CUDA provider (pack.sh --cuda): parts carried by earlier calls, reassembled here ---
cuda_install() {
  [[ -f .gpu-pack/cuda.sha256 ]] || { echo "no CUDA provider packed (pack.sh --cuda)"; return 3; }
  bash scripts/gpu/parts.sh join .gpu-cuda .gpu-pack/cuda.sha256 "$WORK/cuda.tar.xz" || { echo "(the CUDA provider)"; return 1; }
  tar -xJf "$WORK/cuda.tar.xz" -C "$W/node_modules/onnxruntime-node/bin/napi-v6/linux/x64" || return 1
  rm -f "$WORK/cuda.tar.xz"
  ls -la "$W/node_modules/onnxruntime-node/bin/napi-v6/linux/x64"
}
export -f cuda_install
export WORK
CUDA_READY=0
if step cuda 120 280 bash -c cuda_install; then
  CUDA_READY=1
  # The provider links against CUDA 13's cuBLAS, cuRAND and runtime: PyTorch's nvidia-* wheels
  # (and torch/lib) hold them on this machine.
  NV_LIBS=$("$PY" scripts/gpu/cuda_lib_dirs.py 2>/dev/null)
  export LD_LIBRARY_PATH=${NV_LIBS}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
  "$NODE" -e "const m = require('$W/out/extension/engine/cuda-provider.js'); const v = require('$W/node_modules/onnxruntime-node/package.json').version; const need = (m.CUDA_PROVIDER_PACKAGES[v] || { needs: [] }).needs; console.log('CUDA libraries needed: ' + need.join(', ') + '; missing: ' + (m.missingLibraries(need).join(', ') || 'none'))"
fi
PROVIDERS=${CLIPN_GPU_PROVIDERS:-$([[ $CUDA_READY == 1 ]] && echo cuda,cpu || echo webgpu,cpu)}
echo "providers for the bench: $PROVIDERS"

echo
echo "=== [gpu] nvidia-smi"
GPU_NAME=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem,power.limit --format=csv 2>&1 | head -5
nvidia-smi 2>&1 | head -15
echo "=== [vulkan] loader from .gl"
if [[ -n "${CLIPN_GPU_NO_DPKG:-}" ]]; then
  echo "CLIPN_GPU_NO_DPKG set: not unpacking .gl into /"
elif ls .gl/*.deb >/dev/null 2>&1; then
  for f in .gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
else
  echo "no .gl/*.deb carried: relying on a system Vulkan loader"
fi
ldconfig -p | grep -E 'libvulkan|libGLX_nvidia|libEGL_nvidia' | head -5
ICDS=$(ls /usr/local/nvidia/share/vulkan/icd.d/*.json /usr/share/vulkan/icd.d/*.json /etc/vulkan/icd.d/*.json 2>/dev/null | tr '\n' ' ')
echo "Vulkan ICD files: ${ICDS:-none}"
if [[ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]]; then
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  [[ -f /usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json ]] && export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
  echo "VK_DRIVER_FILES=$VK_DRIVER_FILES"
  head -c 400 "$VK_DRIVER_FILES"; echo
fi
command -v vulkaninfo >/dev/null && timeout 20 vulkaninfo --summary 2>&1 | head -40
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp/xdg-runtime}
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"

# --- 1. torch-compat probe: the project's exporter as it is, on this torch ---------------------
# (JSON lines go to $WORK, not $OUT: at most 8 files come back, and the report quotes them.)
step compat 90 330 "$PY" scripts/gpu/export_random.py --arch micro --out "$WORK/micro-asis" --fp16 --exporter as-is --check >"$WORK/compat.json"
cat "$WORK/compat.json"

# --- 2. export the ViT-B/16-sized model ---------------------------------------------------------
if [[ -n "${CLIPN_GPU_MODEL:-}" ]]; then
  STEPS+=("export: skipped, using $MODEL")
else
  step export 200 200 "$PY" scripts/gpu/export_random.py --arch "$ARCH" --out "$MODEL" --fp16 >"$WORK/export.json"
  cat "$WORK/export.json"
fi

# --- 3. PyTorch eager baseline --------------------------------------------------------------------
step torch 100 150 "$PY" scripts/gpu/torch_bench.py --arch "$ARCH" --device "$TORCH_DEVICE" --batches "$TORCH_BATCHES" --host-batches "$TORCH_HOST_BATCHES" --budget-s 80 --json "$OUT/torch.json"

# --- 4. the engine bench --------------------------------------------------------------------------
MODELS=()
[[ -f "$MODEL/clipn.json" ]] && MODELS+=(--model "$MODEL")
[[ -f models/default/clipn.json ]] && MODELS+=(--model "$ROOT/models/default")
TORCH_ARG=()
[[ -f "$OUT/torch.json" ]] && TORCH_ARG=(--torch "$OUT/torch.json")
if ((${#MODELS[@]} == 0)); then
  STEPS+=("bench: skipped, no model folder (export failed?)")
else
  left=$((BUDGET - $(elapsed) - 60))
  step bench 260 60 env VK_LOADER_DEBUG=error "$NODE" "$W/out/bench/gpu.js" "${MODELS[@]}" --providers "$PROVIDERS" \
    --batches "$BATCHES" --precisions fp16,fp32 --cpu-batches "$CPU_BATCHES" --cpu-precisions fp32 \
    --e2e "$E2E" --e2e-batch "$E2E_BATCH" --gpu "${GPU_NAME:-unknown}" "${TORCH_ARG[@]}" \
    --deadline-s $((left > 260 ? 230 : left - 30)) --json "$OUT/gpu.json" --report "$OUT/bench.txt"
fi

# --- 5. the engine's provider tests (they export their own micro model with this torch) -------
if [[ -f "$W/out/test/unit/engine-model.test.js" ]]; then
  step unit 90 10 env CLIPN_PYTHON="$PY" "$NODE" --test --test-reporter=spec "$W/out/test/unit/engine-model.test.js" >"$OUT/unit.txt" 2>&1
  tail -25 "$OUT/unit.txt"
fi

# --- 6. report ------------------------------------------------------------------------------------
{
  echo "clipn GPU run $(date -u +%FT%TZ), $(($(date +%s) - T0)) s; GPU: ${GPU_NAME:-none found}; $(nproc) cores"
  echo "pack: $(cat .gpu-pack/CONTENTS 2>/dev/null || echo '?'); CUDA provider installed: $([[ $CUDA_READY == 1 ]] && echo yes || echo no); providers $PROVIDERS; Vulkan ICDs: ${ICDS:-none}; VK_DRIVER_FILES=${VK_DRIVER_FILES:-unset}"
  echo "python: $("$PY" -c 'import sys, torch, onnx; print(sys.version.split()[0], "torch", torch.__version__, "onnx", onnx.__version__)' 2>&1 | tail -1)"
  echo
  echo "steps:"
  for s in "${STEPS[@]}"; do echo "  $s"; done
  echo
  echo "torch-compat probe (project exporter untouched, micro model): $(tail -1 "$WORK/compat.json" 2>/dev/null)"
  echo "export: $(tail -1 "$WORK/export.json" 2>/dev/null)"
  echo
  if [[ -f "$OUT/torch.json" ]]; then
    echo "PyTorch eager ($ARCH image tower):"
    "$PY" - "$OUT/torch.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
print(f"  {d['device']}, torch {d['torch']} CUDA {d['cuda']}, {d['gflop_per_image']} GFLOP/image")
for r in d["results"]:
    print(f"  {r['precision']:9s} b{r['batch']:<4d} {r['mode']:6s} {r['images_per_s']:9.1f} img/s {r['ms_per_batch']:8.2f} ms/batch {r['tflops']:6.1f} TFLOP/s")
for e in d["errors"]:
    print(f"  error: {e}")
EOF
  fi
  echo
  [[ -f "$OUT/bench.txt" ]] && cat "$OUT/bench.txt" || echo "engine bench: no summary (see log.txt)"
  echo
  if [[ -f "$OUT/unit.txt" ]]; then
    echo "unit tests (engine-model.test.js):"
    grep -E '^ℹ (tests|pass|fail|skipped|duration)|^# (pass|fail)|✖' "$OUT/unit.txt" | head -20
  fi
} >"$OUT/report.txt" 2>&1
echo
echo "=================== report ($OUT/report.txt) ==================="
cat "$OUT/report.txt"
exec 1>&- 2>&-
wait "$TEE_PID" 2>/dev/null
exit 0
