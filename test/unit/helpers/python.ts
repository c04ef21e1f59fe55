// Runs reference computations in Debian's Python (numpy, scikit-learn, torch, the models/
// package) so unit tests compare the engine against independent implementations.
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';

export const REPO_ROOT = path.resolve(__dirname, '..', '..', '..', '..');
export const SHARED_DIR = path.resolve(REPO_ROOT, '..', 'shared');
/** Debian's interpreter: the one on PATH may lack torch/numpy/sklearn. */
export const PYTHON = process.env.CLIPN_PYTHON ?? '/usr/bin/python3';

/** Runs `code` with `input` as JSON on stdin; the script prints JSON on stdout. */
export function runPythonJson<T>(code: string, input: unknown): T {
  const result = spawnSync(PYTHON, ['-c', code], {
    input: JSON.stringify(input),
    encoding: 'utf8',
    maxBuffer: 512 * 1024 * 1024,
    env: { ...process.env, PYTHONPATH: path.join(REPO_ROOT, 'models') },
  });
  if (result.status !== 0) {
    throw new Error(`python reference failed (exit ${result.status}): ${result.stderr}`);
  }
  return JSON.parse(result.stdout) as T;
}
