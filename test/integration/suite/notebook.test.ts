// The notebook in a real VS Code extension host: the sample runs end to end with the expected
// outputs, a malformed cell is squiggled and fails at its line, a killed kernel fails only its
// cell, and interrupt stops a cell within a second. (The untrusted workspace has its own launch:
// ../untrusted/untrusted.test.ts.)
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import type { ClipnApi } from '../../../extension/main';
import { MIME, type Block, type FigureSpec } from '../../../extension/protocol';
import { clipnApi, codeCells, configure, errorOf, noiseImages, openFile, progressText, runCells, scratch, untitled, viewOf, waitFor, workspaceDir } from './util';

const figures = (blocks: Block[]): FigureSpec[] => blocks.flatMap((b) => (b.type === 'figure' ? [b.figure] : []));

suite('CLIPN notebook', () => {
  let api: ClipnApi;

  suiteSetup(async () => {
    api = await clipnApi();
    await configure();
  });

  test('the sample notebook runs all cells and every output has the view and text MIME types', async () => {
    const file = path.join(workspaceDir(), 'samples', 'getting-started.clipnb');
    const nb = await openFile(file);
    const started = Date.now();
    const cells = codeCells(nb);
    await runCells(nb, 0, nb.cellCount);
    for (const c of cells) {
      assert.equal(c.executionSummary?.success, true, `cell ${c.index + 1} failed: ${JSON.stringify(errorOf(c))}`);
      const mimes = c.outputs.flatMap((o) => o.items.map((i) => i.mime));
      assert.deepEqual(mimes, [MIME.view, MIME.text], `cell ${c.index + 1}`);
    }
    assert.deepEqual(cells.map((c) => viewOf(c).kind), ['model', 'dataset', 'dataset', 'prompts', 'evaluate', 'prompts', 'evaluate', 'embed', 'geometry', 'umap', 'ablation']);
    const orders = cells.map((c) => c.executionSummary!.executionOrder!);
    assert.deepEqual(orders, [...orders].sort((a, b) => a - b), 'execution order follows the notebook');

    const count = (dir: string) => fs.readdirSync(dir, { recursive: true }).filter((f) => String(f).endsWith('.jpg')).length;
    const nId = count(path.join(workspaceDir(), 'samples', 'images', 'id'));
    const nOod = count(path.join(workspaceDir(), 'samples', 'images', 'ood'));

    const model = viewOf(cells[0]);
    const kv = model.blocks.find((b) => b.type === 'keyvalue');
    assert.ok(kv && kv.type === 'keyvalue' && kv.rows.some(([k, v]) => k === 'execution provider' && v === 'cpu'), 'the provider used is shown');

    const ds = viewOf(cells[1]);
    const bars = figures(ds.blocks)[0].data[0];
    assert.equal(Array.from(bars.y as Float64Array).reduce((a, b) => a + b, 0), nId);

    const ev = viewOf(cells[4]);
    const table = ev.blocks.find((b) => b.type === 'table');
    assert.ok(table && table.type === 'table');
    assert.deepEqual(table.rows.map((r) => r[0]), ['MSP', 'MaxLogit', 'Energy', 'CTW', 'ATD']);
    assert.ok(table.columns.map((c) => c.label).join('|').match(/AUROC.*FPR95.*AUPR-In.*AUPR-Out.*ID acc/));
    for (const r of table.rows) for (const v of r.slice(2)) assert.ok(typeof v === 'number' && v >= 0 && v <= 100, `metric ${v}`);
    const [roc, hist] = figures(ev.blocks).filter((f, i) => i === 0 || /ATD score/.test(f.layout.xTitle ?? ''));
    assert.equal(roc.data.length, 6, 'five ROC curves and the chance line');
    assert.ok(roc.data[0].x instanceof Float32Array, 'figure arrays travel as binary');
    assert.equal((hist.data[0].x as Float32Array).length, nId);
    assert.equal((hist.data[1].x as Float32Array).length, nOod);
    assert.deepEqual((viewOf(cells[6]).blocks.find((b) => b.type === 'table') as Extract<Block, { type: 'table' }>).rows.map((r) => r[0]), ['CTW', 'ATD']);

    const emb = viewOf(cells[7]);
    const points = figures(emb.blocks)[0].data.reduce((n, t) => n + (t.x?.length ?? 0), 0);
    assert.equal(points, nId + nOod);
    assert.ok(emb.notes.some((n) => /cache/.test(n)), 'the embed cell reuses the cached embeddings');

    // The analyses: geometry's image side, UMAP's points with their images, the ablation's pool.
    const geo = figures(viewOf(cells[8]).blocks);
    assert.equal(geo[geo.length - 1].images?.paths.length, nId + nOod, 'every image on the yes/no plane');
    const umap = figures(viewOf(cells[9]).blocks)[0];
    assert.equal(umap.images?.paths.length, nId + nOod);
    assert.ok(umap.images!.paths.every((p) => fs.existsSync(p)), 'UMAP points open real files');
    const abl = viewOf(cells[10]);
    assert.equal((abl.blocks.filter((b) => b.type === 'table')[1] as Extract<Block, { type: 'table' }>).rows.length, 16, 'each of the 16 learned prompts alone');
    assert.ok(abl.blocks.some((b) => b.type === 'snippet'), 'the best subset is offered as a cell');
    const times = cells.map((c) => (c.executionSummary!.timing!.endTime - c.executionSummary!.timing!.startTime).toFixed(0));
    console.log(`    sample notebook: ${cells.length} cells in ${Date.now() - started} ms (per cell: ${times.join(', ')} ms)`);
    await vscode.commands.executeCommand('workbench.action.closeActiveEditor');
  });

  test('a malformed cell shows a diagnostic before running and fails with its line', async () => {
    const nb = await untitled(['dataset:\n  name: x\n  folder: images/id\n  limitt: 3\n']);
    const cell = nb.cellAt(0);
    const diags = await waitFor('a diagnostic', () => {
      const d = vscode.languages.getDiagnostics(cell.document.uri);
      return d.length > 0 ? d : undefined;
    }, 10_000);
    assert.match(diags[0].message, /unknown key "limitt".*did you mean `limit`/);
    assert.equal(diags[0].range.start.line, 3);
    assert.equal(diags[0].range.start.character, 2);
    assert.equal(diags[0].severity, vscode.DiagnosticSeverity.Error);
    await runCells(nb, 0, 1);
    assert.equal(cell.executionSummary?.success, false);
    const err = errorOf(cell)!;
    assert.equal(err.name, 'InvalidCell');
    assert.match(err.message, /line 4, column 3: unknown key "limitt"/);
  });

  test('killing the kernel mid-run fails that cell; the next run starts a fresh kernel and succeeds', async () => {
    const dir = scratch('noise-kill');
    await noiseImages(dir, 1500, 1);
    const nb = await untitled(['model:\n  providers: [cpu]\n', `dataset:\n  name: noise\n  folder: ${JSON.stringify(dir)}\n`, 'embed:\n  dataset: noise\n']);
    await runCells(nb, 0, 2);
    const pid = await waitFor('a kernel', () => api.controller.kernelPid);
    const cell = nb.cellAt(2);
    const run = runCells(nb, 2, 3);
    await waitFor('embedding progress', () => /encoding|hashing/.test(progressText(cell)), 60_000, 10);
    assert.ok(api.controller.killKernel('SIGKILL'));
    await run;
    assert.equal(cell.executionSummary?.success, false);
    const err = errorOf(cell)!;
    assert.equal(err.name, 'KernelDied');
    assert.match(err.message, /kernel process was killed \(SIGKILL/);
    assert.match(err.message, /next run starts a fresh kernel/);
    // The editor is fine and a new run works in a new process.
    const again = await runCells(nb, 0, 2);
    assert.ok(again.every((c) => c.executionSummary?.success === true), JSON.stringify(again.map(errorOf)));
    assert.notEqual(api.controller.kernelPid, pid);
    assert.equal(again[0].executionSummary?.executionOrder, 1, 'a fresh kernel counts from 1');
  });

  test('interrupt stops the running cell within a second', async () => {
    const dir = scratch('noise-interrupt');
    await noiseImages(dir, 1500, 2);
    const nb = await untitled(['model:\n  providers: [cpu]\n', `dataset:\n  name: noise\n  folder: ${JSON.stringify(dir)}\n`, 'embed:\n  dataset: noise\n']);
    await runCells(nb, 0, 2);
    const cell = nb.cellAt(2);
    const run = runCells(nb, 2, 3);
    await waitFor('embedding progress', () => /encoding/.test(progressText(cell)), 60_000, 10);
    const t0 = Date.now();
    await vscode.commands.executeCommand('notebook.cancelExecution', nb.uri);
    await waitFor('the cell to stop', () => cell.executionSummary?.success === false, 5_000, 10);
    const elapsed = Date.now() - t0;
    await run;
    assert.ok(elapsed < 1000, `stopped after ${elapsed} ms`);
    assert.equal(errorOf(cell)?.name, 'Interrupted');
    // The kernel is still usable afterwards.
    const after = await runCells(nb, 1, 2);
    assert.equal(after[0].executionSummary?.success, true, JSON.stringify(errorOf(after[0])));
  });

  test('commands: clear the cache, restart the kernel', async () => {
    const cache = path.join(scratch('cache'), 'embeddings');
    assert.ok(fs.existsSync(cache) && fs.readdirSync(cache).length > 0, 'earlier tests filled the cache');
    await vscode.commands.executeCommand('clipn.clearCache');
    assert.deepEqual(fs.readdirSync(cache), []);
    assert.ok(api.controller.kernelPid !== undefined);
    await vscode.commands.executeCommand('clipn.restartKernel');
    assert.equal(api.controller.kernelPid, undefined);
    const all = await vscode.commands.getCommands(true);
    assert.ok(all.includes('clipn.openSample'));
  });
});
