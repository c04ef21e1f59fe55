#!/usr/bin/env bash
# Installs what CLIPN Lab needs on Debian 12 with Node 20, from Debian's archive and the npm
# registry only, then builds. `--test` adds what the test suites need.
set -euo pipefail
cd "$(dirname "$0")/.."

# g++ compiles the optional native ATD kernel (scripts/build-native.mjs) during the build.
APT=(python3-torch python3-torchvision python3-onnx python3-numpy python3-regex python3-pil python3-sklearn g++)
if [[ "${1:-}" == "--test" ]]; then
  APT+=(python3-pytest)
fi

source scripts/lib/apt.sh
ensure_debian_packages install "${APT[@]}"

# onnxruntime-node's postinstall fetches the CUDA provider from outside the npm registry.
# Online machines get it; where that fetch cannot succeed, install without it (CPU and
# WebGPU providers are in the npm package itself).
if [[ ! -d node_modules/onnxruntime-node || package-lock.json -nt node_modules/.package-lock.json ]]; then
  if ! npm ci --no-audit --no-fund; then
    echo "install: retrying without onnxruntime-node's CUDA download (ONNXRUNTIME_NODE_INSTALL=skip)"
    ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund
  fi
fi
npm run --silent build

# The integration and end-to-end suites need a real VS Code (code-server) and chromium.
if [[ "${1:-}" == "--test" ]]; then
  bash scripts/install-test-tools.sh
fi
