#!/usr/bin/env bash
# Installs what the integration and end-to-end suites need, offline-safe (Debian archive and
# the npm registry only): Debian chromium for Playwright, and code-server 4.100.3 (VS Code
# 1.100.3, runs on Node 20) into its own prefix .tools/code-server, not as a dependency of
# the extension (see shared notes: vscode-host.md).
set -euo pipefail
cd "$(dirname "$0")/.."

CODE_SERVER_VERSION=4.100.3
PREFIX="$PWD/.tools/code-server"

APT=(chromium libkrb5-dev build-essential python3 pkg-config ripgrep fonts-dejavu-core)
source scripts/lib/apt.sh
ensure_debian_packages install-test-tools "${APT[@]}"

if [[ -x "$PREFIX/node_modules/.bin/code-server" ]] &&
   [[ "$(cat "$PREFIX/.version" 2>/dev/null)" == "$CODE_SERVER_VERSION" ]]; then
  exit 0
fi

echo "install-test-tools: code-server@$CODE_SERVER_VERSION into $PREFIX"
rm -rf "$PREFIX"
mkdir -p "$PREFIX"
# @vscode/ripgrep's postinstall downloads rg from GitHub unless its cache already holds the
# archive: hand it Debian's /usr/bin/rg under the name it looks for.
TMP_ROOT="$(mktemp -d)"
trap 'rm -rf "$TMP_ROOT"' EXIT
RG_CACHE="$TMP_ROOT/vscode-ripgrep-cache-1.15.11"
mkdir -p "$RG_CACHE" "$TMP_ROOT/rg"
cp /usr/bin/rg "$TMP_ROOT/rg/rg"
tar -czf "$RG_CACHE/ripgrep-v13.0.0-10-x86_64-unknown-linux-musl.tar.gz" -C "$TMP_ROOT/rg" rg
# code-server writes to $HOME even while installing: keep that inside the prefix.
(
  cd "$PREFIX"
  echo '{"name":"clipn-test-tools","private":true}' > package.json
  # Keep the user's npm settings (e.g. nodedir, so native addons build against local headers
  # instead of downloading them) although HOME moves.
  USERCONFIG="${npm_config_userconfig:-$HOME/.npmrc}"
  CACHE="${npm_config_cache:-$HOME/.npm}"
  NODEDIR=()
  [[ -f /usr/include/node/node.h ]] && NODEDIR=(--nodedir=/usr)
  # As root, code-server's postinstall refuses to run unless unsafe-perm is set.
  HOME="$PREFIX/home" TMPDIR="$TMP_ROOT" npm_config_userconfig="$USERCONFIG" npm_config_cache="$CACHE" npm_config_yes=true npm_config_unsafe_perm=true \
    npm install "${NODEDIR[@]}" --no-audit --no-fund --no-save "code-server@$CODE_SERVER_VERSION"
)
echo "$CODE_SERVER_VERSION" > "$PREFIX/.version"
