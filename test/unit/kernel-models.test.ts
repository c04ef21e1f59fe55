// The kernel's models (kernel/state.ts): a model cell re-run with other settings leaves its old
// model unnamed, and the kernel releases it (sessions, text workers) instead of keeping every
// model it ever loaded; models that cells still name are kept and keep working.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { executeCell } from '../../extension/kernel/execute';
import { KernelState, type ModelValue } from '../../extension/kernel/state';
import type { KernelSettings, ViewPayload } from '../../extension/protocol';
import { DEFAULT_MODEL_DIR } from './helpers/models';

test('a model no cell names any more is released; named ones are kept and keep working', async () => {
  const state = new KernelState();
  const cache = fs.mkdtempSync(path.join(os.tmpdir(), 'clipn-models-'));
  const settings: KernelSettings = { modelFolder: DEFAULT_MODEL_DIR, providers: ['cpu'], batchSize: 8, threads: 1, cacheFolder: cache };
  let n = 0;
  const run = async (source: string): Promise<ViewPayload> => {
    const o = await executeCell(state, { source, baseDir: os.tmpdir(), cellNumber: ++n, settings, signal: new AbortController().signal, progress: () => undefined });
    if (!o.ok) throw new Error(`cell ${n} failed: ${o.message}`);
    return o.payload;
  };
  const named = (name: string) => (state.defs.get(name)!.value as ModelValue).model;
  const released = (v: ViewPayload) => v.notes.find((t) => t.startsWith('Released '));
  try {
    assert.equal(released(await run('model:\n  name: a\n')), undefined);
    assert.equal(released(await run('model:\n  name: b\n  precision: int8\n')), undefined, 'two names, two models: both kept');
    const [a, b] = [named('a'), named('b')];
    assert.notEqual(a, b);
    // Cell "a" re-run with b's settings: the same model as b, and a's first model is named by no one.
    const again = await run('model:\n  name: a\n  precision: int8\n');
    assert.equal(named('a'), b);
    assert.equal(released(again), 'Released 1 model that no model cell names any more (its sessions and workers).');
    await assert.rejects(a.encodeTexts(['a photo of a cat.']), 'the released model refuses work');
    assert.equal((await b.encodeTexts(['a photo of a cat.'])).dims[0], 1, 'the named model still encodes');
    assert.equal(released(await run('model:\n  name: b\n  precision: int8\n')), undefined, 'a re-run with the same settings releases nothing');
  } finally {
    await state.dispose();
    fs.rmSync(cache, { recursive: true, force: true });
  }
});
