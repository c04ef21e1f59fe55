// Integration tests: mocha inside a real VS Code extension host, through @vscode/test-electron's
// standard runTests() entry. Here the "VS Code executable" is code-server-shim.sh (code-server +
// headless chromium, see vscode-host notes); on a desktop set CLIPN_VSCODE_EXECUTABLE to a VS
// Code binary, or CLIPN_VSCODE_DOWNLOAD=1 to let test-electron download one.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { runTests } from '@vscode/test-electron';
import { REPO_ROOT, scratchDir } from './host';

async function main(): Promise<void> {
  const workspace = scratchDir('clipn-itest-ws-');
  // A copy of the samples: the tests run and edit notebooks without touching the repository.
  fs.cpSync(path.join(REPO_ROOT, 'samples'), path.join(workspace, 'samples'), { recursive: true });
  const env: Record<string, string> = { CLIPN_TEST_WORKSPACE: workspace };
  if (!fs.existsSync(path.join(REPO_ROOT, 'models', 'default', 'clipn.json'))) {
    // Until the bundled model exists, a micro model exported by the Python toolchain stands in.
    const { exportMicroModel } = await import('../unit/helpers/models');
    env.CLIPN_TEST_MODEL_FOLDER = exportMicroModel();
    console.log(`integration: models/default is missing; using the micro model ${env.CLIPN_TEST_MODEL_FOLDER}`);
  }
  const executable = process.env.CLIPN_VSCODE_EXECUTABLE ?? (process.env.CLIPN_VSCODE_DOWNLOAD ? undefined : path.join(REPO_ROOT, 'test', 'integration', 'code-server-shim.sh'));
  try {
    await runTests({
      vscodeExecutablePath: executable,
      extensionDevelopmentPath: REPO_ROOT,
      extensionTestsPath: path.join(REPO_ROOT, 'out', 'test', 'integration', 'suite', 'index.js'),
      launchArgs: [workspace, '--disable-extensions'],
      extensionTestsEnv: env,
    });
  } finally {
    fs.rmSync(workspace, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
