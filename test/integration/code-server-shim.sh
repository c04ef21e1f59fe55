#!/usr/bin/env bash
# Executable that @vscode/test-electron's runTests() launches as "VS Code": forwards to the
# compiled shim, which runs the tests in code-server + chromium (see code-server-shim.ts).
exec node "$(dirname "$0")/../../out/test/integration/code-server-shim.js" "$@"
