// The sample notebooks: every code cell of every sample is valid clipn (parses with no
// diagnostic), the runnable samples run headless to the end with the editor's kernel code, and
// together they use every analysis cell kind. (getting-started also runs in the integration
// and end-to-end suites, in a real VS Code; bring-your-own-clipn needs the user's checkpoint and
// images, so it is only validated.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { executeNotebook, readNotebookFile } from '../../extension/cli/run-notebook';
import { parseCell } from '../../extension/language/validate';
import { DEFAULT_MODEL_DIR } from './helpers/models';
import { REPO_ROOT } from './helpers/python';

const SAMPLES = path.join(REPO_ROOT, 'samples');
const notebooks = fs.readdirSync(SAMPLES).filter((f) => f.endsWith('.clipnb')).sort();

test('the three sample notebooks exist and every code cell is valid clipn', () => {
  assert.deepEqual(notebooks, ['bring-your-own-clipn.clipnb', 'getting-started.clipnb', 'prompt-pool-lab.clipnb']);
  const kinds = new Set<string>();
  for (const f of notebooks) {
    const nb = readNotebookFile(path.join(SAMPLES, f));
    for (const [i, c] of nb.cells.entries()) {
      if (c.kind !== 'code') continue;
      const parsed = parseCell(c.source);
      assert.deepEqual(parsed.diagnostics.map((d) => d.message), [], `${f}, cell ${i + 1}`);
      assert.ok(parsed.kind, `${f}, cell ${i + 1} has a kind`);
      kinds.add(parsed.kind!);
    }
  }
  for (const k of ['evaluate', 'geometry', 'umap', 'ablation']) assert.ok(kinds.has(k), `a sample uses \`${k}:\``);
});

test('prompt-pool-lab runs headless to the end on the default model', async () => {
  const nb = readNotebookFile(path.join(SAMPLES, 'prompt-pool-lab.clipnb'));
  const cache = fs.mkdtempSync(path.join(os.tmpdir(), 'clipn-samples-'));
  const run = await executeNotebook(nb, SAMPLES, { modelFolder: DEFAULT_MODEL_DIR, providers: ['cpu'], batchSize: 32, threads: 0, cacheFolder: cache }, new AbortController().signal);
  const failed = run.results.filter((r) => r.status !== 'ok').map((r) => `cell ${r.number}: ${r.outcome.ok ? '' : r.outcome.message}`);
  assert.deepEqual(failed, []);
  assert.equal(run.results.length, nb.cells.filter((c) => c.kind === 'code').length);
  fs.rmSync(cache, { recursive: true, force: true });
});
