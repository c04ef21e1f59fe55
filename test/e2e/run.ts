// End to end: the packaged .vsix installed into code-server, chromium opens
// samples/getting-started.clipnb, runs all, and waits until every figure is drawn by plotly in
// the output webview; screenshots go to test-artifacts/. Then the notebook is saved, closed and
// reopened, and every figure must draw again with no kernel run. Prints "N passed, N failed".
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseNotebook } from '../../extension/notebook/nbformat';
import { MIME, unpackPayload, type ViewPayload } from '../../extension/protocol';
import { REPORT_DONE_SELECTOR, REPORT_FIGURES_DRAWN, REPORT_STATE } from '../../extension/report/contract';
import { installVsix, launchChromium, REPO_ROOT, scratchDir, startCodeServer } from '../integration/host';
import { bringIntoView, command, drawnFigures, NOTEBOOK_EDITOR, openNotebook, outputFrame, runAll, saveAndClose, scrollThrough, setColorTheme, waitForWorkbench } from './workbench';

const ARTIFACTS = process.env.CLIPN_ARTIFACTS ?? path.join(REPO_ROOT, 'test-artifacts');
const NOTEBOOK = 'getting-started.clipnb';
const VIEWPORT = { width: 1400, height: 2400 };

const results: Array<{ name: string; ok: boolean; detail: string }> = [];
const log = (s: string) => console.log(`e2e: ${s}`);

function packageVsix(): string {
  if (process.env.CLIPN_VSIX) return process.env.CLIPN_VSIX;
  const out = path.join(REPO_ROOT, 'build', 'clipn-lab-linux-x64.vsix');
  const t = Date.now();
  execFileSync('npm', ['run', '--silent', 'package'], { cwd: REPO_ROOT, stdio: ['ignore', 'ignore', 'inherit'] });
  log(`packaged ${path.relative(REPO_ROOT, out)} (${(fs.statSync(out).size / 1048576).toFixed(1)} MB) in ${((Date.now() - t) / 1000).toFixed(1)} s`);
  return out;
}

/** A close-up of one drawn figure (a picture for people; not a check, so it never fails one). */
async function shotFigure(page: import('playwright-core').Page, name: string): Promise<void> {
  const fig = outputFrame(page).locator('.clipn-figure.js-plotly-plot:has(.main-svg) >> visible=true').first();
  await fig.screenshot({ path: path.join(ARTIFACTS, name), timeout: 5000 }).catch((err: Error) => log(`no ${name}: ${err.message.split('\n')[0]}`));
}

async function check(name: string, fn: () => Promise<string>): Promise<void> {
  try {
    const detail = await fn();
    results.push({ name, ok: true, detail });
    log(`ok   ${name}: ${detail}`);
  } catch (err) {
    results.push({ name, ok: false, detail: (err as Error).message });
    log(`FAIL ${name}: ${(err as Error).stack ?? err}`);
  }
}

async function main(): Promise<number> {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  for (const f of fs.readdirSync(ARTIFACTS)) if (/^e2e-.*\.png$/.test(f)) fs.rmSync(path.join(ARTIFACTS, f));
  const root = scratchDir('clipn-e2e-');
  const workspace = path.join(root, 'workspace');
  fs.cpSync(path.join(REPO_ROOT, 'samples'), workspace, { recursive: true });
  const nbFile = path.join(workspace, NOTEBOOK);
  // A file whose name is markup, and unreadable, so every view that lists failures shows it.
  const XSS = '<img src=x onerror=alert(1)>.png';
  fs.writeFileSync(path.join(workspace, 'images', 'ood', fs.readdirSync(path.join(workspace, 'images', 'ood'))[0], XSS), '');

  const settings: Record<string, unknown> = { 'clipn.cacheFolder': path.join(root, 'cache') };
  if (!fs.existsSync(path.join(REPO_ROOT, 'models', 'default', 'clipn.json'))) {
    const { exportMicroModel } = await import('../unit/helpers/models');
    settings['clipn.modelFolder'] = exportMicroModel();
    log(`models/default is missing; the notebook runs on the micro model ${settings['clipn.modelFolder']}`);
  }
  // The main job's notebook, headless (`clipn run`, as scripts/main.sh runs it): its views say
  // how many figures the notebook draws, and its HTML report must draw every one of them.
  let expected = 0;
  const headless = spawnSync(process.execPath, [path.join(REPO_ROOT, 'out', 'extension', 'cli', 'clipn.js'), 'run', nbFile, '--html', path.join(root, 'report.html'), '--out', path.join(root, 'headless.clipnb'), '--providers', 'cpu', '--cache-folder', path.join(root, 'cache-headless'), ...(settings['clipn.modelFolder'] ? ['--model-folder', String(settings['clipn.modelFolder'])] : [])], { encoding: 'utf8' });
  if (fs.existsSync(path.join(root, 'headless.clipnb'))) {
    for (const cell of parseNotebook(fs.readFileSync(path.join(root, 'headless.clipnb'))).cells) {
      for (const item of cell.outputs.flatMap((o) => o.items.filter((i) => i.mime === MIME.view))) {
        expected += unpackPayload<ViewPayload>(item.data).blocks.filter((b) => b.type === 'figure').length;
      }
    }
  }
  const vsix = packageVsix();
  const extensionsDir = path.join(root, 'extensions');
  await installVsix(root, extensionsDir, vsix);
  const server = await startCodeServer({ root, extensionsDir, userSettings: settings });
  const browser = await launchChromium(root);
  let ok = false;
  try {
    await check('the main job\'s notebook runs headless and its HTML report draws every figure', async () => {
      if (headless.status !== 0) throw new Error(`clipn run exited ${headless.status}: ${headless.stderr.split('\n').slice(-5).join(' | ')}`);
      const report = await browser.newPage({ viewport: { width: 1200, height: 1600 } });
      const requests: string[] = [];
      report.on('request', (r) => (r.url().startsWith('file:') ? undefined : requests.push(r.url())));
      await report.goto(`file://${path.join(root, 'report.html')}`);
      await report.waitForSelector(REPORT_DONE_SELECTOR, { timeout: 120_000 });
      const body = report.locator('body');
      const [state, drawn] = [await body.getAttribute(REPORT_STATE), await body.getAttribute(REPORT_FIGURES_DRAWN)];
      const svg = await report.locator('.clipn-figure.js-plotly-plot:has(.main-svg)').count();
      await report.screenshot({ path: path.join(ARTIFACTS, 'e2e-report.png') });
      await report.close();
      if (state !== 'ready' || Number(drawn) !== expected || svg !== expected) throw new Error(`report ${state}: ${drawn} figures drawn (${svg} plots on the page), the notebook's views hold ${expected}`);
      if (requests.length) throw new Error(`the report fetched ${requests.join(', ')}`);
      return `${expected} of ${expected} figures drawn from ${(fs.statSync(path.join(root, 'report.html')).size / 1048576).toFixed(1)} MB, no network`;
    });

    const page = await browser.newPage({ viewport: VIEWPORT });
    page.on('pageerror', (e) => log(`page error: ${e.message}`));
    const dialogs: string[] = [];
    page.on('dialog', (d) => {
      dialogs.push(d.message());
      void d.dismiss();
    });
    const t0 = Date.now();
    await page.goto(`${server.url}/?folder=${encodeURIComponent(workspace)}`);
    await waitForWorkbench(page);
    log(`workbench after ${((Date.now() - t0) / 1000).toFixed(1)} s`);

    await check('run all draws every figure', async () => {
      await openNotebook(page, NOTEBOOK, log);
      const t = Date.now();
      await runAll(page);
      const deadline = Date.now() + 180_000;
      let drawn = 0;
      while ((drawn = await drawnFigures(page)) < expected) {
        if (Date.now() > deadline) throw new Error(`${drawn} of ${expected} figures drawn after 180 s`);
        await scrollThrough(page);
        await page.waitForTimeout(500);
      }
      await page.screenshot({ path: path.join(ARTIFACTS, 'e2e-run-all.png'), fullPage: true });
      await shotFigure(page, 'e2e-figure.png');
      return `${drawn}/${expected} figures drawn ${((Date.now() - t) / 1000).toFixed(1)} s after Run All`;
    });

    // The UMAP cell's points carry their images (the sample has 144: an SVG scatter).
    const umapPoint = outputFrame(page).locator('.clipn-view[data-kind="umap"] .clipn-figure .scatterlayer path.point').first();
    await check('hovering a UMAP point shows its image', async () => {
      const box = await bringIntoView(page, umapPoint, VIEWPORT.height);
      await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
      const card = outputFrame(page).locator('.clipn-view[data-kind="umap"] .clipn-hover:not([hidden])');
      await card.locator('img.clipn-thumb').waitFor({ timeout: 10_000 });
      await card.screenshot({ path: path.join(ARTIFACTS, 'e2e-hover.png') }).catch(() => undefined);
      return `hover card: ${await card.innerText()}`;
    });
    await check('clicking a UMAP point opens the image in the editor', async () => {
      const box = await bringIntoView(page, umapPoint, VIEWPORT.height);
      await page.mouse.click(box.x + box.width / 2, box.y + box.height / 2);
      const tab = page.locator('.tabs-container .tab', { hasText: /\.jpg/ }).first();
      await tab.waitFor({ timeout: 15_000 });
      const name = await tab.innerText();
      // Close the image's own tab (it opened beside the notebook), whichever group has focus.
      await tab.hover();
      await tab.locator('.tab-actions .action-label').first().click({ timeout: 10_000 });
      await tab.waitFor({ state: 'detached', timeout: 10_000 });
      await page.locator(NOTEBOOK_EDITOR).first().waitFor({ state: 'visible', timeout: 10_000 });
      return `opened ${name.trim()}`;
    });
    await check('a lasso selection lists the images and saves them as CSV', async () => {
      const fig = outputFrame(page).locator('.clipn-view[data-kind="umap"] .clipn-figure .nsewdrag').first();
      const box = await bringIntoView(page, fig, VIEWPORT.height);
      // A lasso around the whole plot area selects every point.
      const [x0, y0, x1, y1] = [box.x + 2, box.y + 2, box.x + box.width - 2, box.y + box.height - 2];
      await page.mouse.move(x0, y0);
      await page.mouse.down();
      for (const [x, y] of [[x1, y0], [x1, y1], [x0, y1], [x0, y0 + 4]]) await page.mouse.move(x, y, { steps: 12 });
      await page.mouse.up();
      const head = outputFrame(page).locator('.clipn-view[data-kind="umap"] .clipn-selection-head');
      await head.waitFor({ timeout: 10_000 });
      const text = await head.innerText();
      const selected = Number(/(\d+) images? selected/.exec(text)?.[1] ?? 0);
      if (selected < 1) throw new Error(`selection panel says ${text}`);
      await head.locator('button', { hasText: 'Save CSV' }).click();
      // VS Code's own save dialog (the simple one in the browser), proposing the notebook's folder.
      const input = page.locator('.quick-input-widget input');
      await input.waitFor({ state: 'visible', timeout: 10_000 });
      await page.keyboard.press('Enter');
      const csv = path.join(workspace, 'selection.csv');
      // VS Code may create the file before writing it: wait for the content, not the name.
      const read = () => (fs.existsSync(csv) ? fs.readFileSync(csv, 'utf8').trim().split('\n') : []);
      const deadline = Date.now() + 10_000;
      while (read().length < selected + 1 && Date.now() < deadline) await page.waitForTimeout(200);
      const lines = read();
      if (lines.length === 0) throw new Error('selection.csv was not written');
      if (!lines[0].startsWith('path,label,set,role,class') || lines.length !== selected + 1) throw new Error(`selection.csv: ${lines.length - 1} rows for ${selected} selected; header ${lines[0]}`);
      return `${selected} images selected; selection.csv has ${lines.length - 1} rows`;
    });

    await check('saved notebook keeps self-contained outputs', async () => {
      await saveAndClose(page);
      const saved = parseNotebook(fs.readFileSync(nbFile));
      const views = saved.cells.flatMap((c) => c.outputs.flatMap((o) => o.items.filter((i) => i.mime === MIME.view)));
      const codeCells = saved.cells.filter((c) => c.kind === 'code').length;
      if (views.length !== codeCells) throw new Error(`${views.length} view outputs saved for ${codeCells} code cells`);
      return `${views.length} view outputs in ${NOTEBOOK} (${(fs.statSync(nbFile).size / 1024).toFixed(0)} KB)`;
    });

    await check('reopened notebook draws every figure without running', async () => {
      // A reloaded window has a new extension host: no kernel, no notebook state in memory,
      // so whatever draws now comes from the file alone.
      await command(page, 'Developer: Reload Window');
      await page.waitForTimeout(1000);
      await waitForWorkbench(page);
      const t = Date.now();
      await openNotebook(page, NOTEBOOK, log);
      const deadline = Date.now() + 60_000;
      let drawn = 0;
      while ((drawn = await drawnFigures(page)) < expected) {
        if (Date.now() > deadline) throw new Error(`${drawn} of ${expected} figures drawn after reopening`);
        await scrollThrough(page);
        await page.waitForTimeout(500);
      }
      await page.screenshot({ path: path.join(ARTIFACTS, 'e2e-reopened.png'), fullPage: true });
      await shotFigure(page, 'e2e-reopened-figure.png');
      return `${drawn}/${expected} figures drawn ${((Date.now() - t) / 1000).toFixed(1)} s after reopening`;
    });

    await check('a file named like markup shows as text and runs nothing', async () => {
      await scrollThrough(page);
      const shown = await outputFrame(page).locator('.clipn-list li', { hasText: XSS }).count();
      if (shown === 0) throw new Error(`no output lists ${XSS} as text`);
      const injected = await outputFrame(page).locator('.clipn-view img:not(.clipn-thumb), .clipn-view script').count();
      if (injected !== 0) throw new Error(`${injected} img/script elements inside outputs`);
      if (dialogs.length) throw new Error(`dialogs opened: ${dialogs.join('; ')}`);
      return `${XSS} listed as text in ${shown} outputs; no element, no dialog`;
    });
    await check('figures follow the editor theme', async () => {
      await setColorTheme(page, 'Dark Modern');
      const dark = outputFrame(page).locator('.clipn-figure.js-plotly-plot[data-theme="vscode-dark"]:has(.main-svg)');
      await dark.first().waitFor({ timeout: 20_000 });
      await page.screenshot({ path: path.join(ARTIFACTS, 'e2e-dark.png'), fullPage: true });
      const color = await dark.first().locator('.xtick text').first().evaluate((e) => (e as unknown as { style: { fill: string } }).style.fill);
      return `${await dark.count()} figures redrawn for vscode-dark (tick labels ${color})`;
    });
    await check('the ablation\'s best subset is inserted as a new cell', async () => {
      const before = parseNotebook(fs.readFileSync(nbFile)).cells.length;
      const button = outputFrame(page).locator('.clipn-view[data-kind="ablation"] .clipn-snippet button', { hasText: 'Insert as new cell' }).first();
      const box = await bringIntoView(page, button, VIEWPORT.height);
      await page.mouse.click(box.x + box.width / 2, box.y + box.height / 2);
      await page.waitForTimeout(1000);
      await command(page, 'File: Save');
      const deadline = Date.now() + 10_000;
      let cells = parseNotebook(fs.readFileSync(nbFile)).cells;
      while (cells.length === before && Date.now() < deadline) {
        await page.waitForTimeout(300);
        cells = parseNotebook(fs.readFileSync(nbFile)).cells;
      }
      const inserted = cells.find((c) => c.kind === 'code' && /^prompts:\n {2}name: ablation_best\n/.test(c.source));
      if (cells.length !== before + 1 || !inserted) throw new Error(`${cells.length} cells after inserting (was ${before}); ablation_best cell ${inserted ? 'found' : 'missing'}`);
      return `cell inserted: ${inserted.source.split('\n').slice(0, 2).join(' / ')}`;
    });
    ok = results.every((r) => r.ok);
    if (!ok) await page.screenshot({ path: path.join(ARTIFACTS, 'e2e-failure.png'), fullPage: true }).catch(() => undefined);
  } finally {
    await browser.close().catch(() => undefined);
    await server.stop();
    if (ok && !process.env.CLIPN_KEEP_SCRATCH) fs.rmSync(root, { recursive: true, force: true });
    else log(`scratch kept: ${root}`);
  }
  const passed = results.filter((r) => r.ok).length;
  console.log(`${passed} passed, ${results.length - passed} failed`);
  return passed === results.length && results.length > 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(err instanceof Error ? err.stack : err);
    console.log(`${results.filter((r) => r.ok).length} passed, ${results.filter((r) => !r.ok).length + 1} failed`);
    process.exit(1);
  },
);
