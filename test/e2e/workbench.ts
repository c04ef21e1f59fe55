// Driving the VS Code workbench in chromium: open a file by quick open, recognise whether it
// opened as a notebook, run all, and reach into the notebook's output webview (two iframes
// deep: the webview host frame, then its #active-frame).
import type { FrameLocator, Page } from 'playwright-core';

// VS Code keeps hidden notebook editor parts around: only a visible one counts.
export const NOTEBOOK_EDITOR = '.notebook-editor >> visible=true';

export function outputFrame(page: Page): FrameLocator {
  return page.frameLocator('iframe.webview.ready').frameLocator('#active-frame');
}

export async function waitForWorkbench(page: Page): Promise<void> {
  await page.waitForSelector('.monaco-workbench .part.editor', { timeout: 90_000 });
  // The remote extension host must be up before a notebook opens as one (vscode-host notes).
  await page.waitForSelector('.statusbar', { timeout: 60_000 });
}

export async function command(page: Page, name: string): Promise<void> {
  const input = page.locator('.quick-input-widget input');
  for (let attempt = 1; ; attempt++) {
    await page.keyboard.press('F1');
    try {
      await input.waitFor({ state: 'visible', timeout: 5_000 });
      break;
    } catch (err) {
      if (attempt === 3) throw err;
      // F1 went to an output webview that kept it (a CI run lost one this way after the lasso
      // check had clicked inside a plot): give focus back to the workbench's document and retry.
      await page.evaluate(() => {
        type Focused = { blur?: () => void } | null;
        (globalThis as unknown as { document: { activeElement: Focused } }).document.activeElement?.blur?.();
      });
    }
  }
  await input.fill(`>${name}`);
  // Click the row whose label is the command, not whatever fuzzy match comes first.
  const row = page.locator('.quick-input-list .monaco-list-row', { has: page.locator('.label-name', { hasText: new RegExp(`^${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`) }) });
  await row.first().click({ timeout: 10_000 });
}

/** Opens a workspace file with quick open; retries while it opens as plain text. */
export async function openNotebook(page: Page, fileName: string, log: (s: string) => void): Promise<void> {
  for (let attempt = 1; attempt <= 5; attempt++) {
    await page.keyboard.press('Control+P');
    const input = page.locator('.quick-input-widget input');
    await input.waitFor({ state: 'visible', timeout: 10_000 });
    await input.fill(fileName);
    await page.locator('.quick-input-list .monaco-list-row', { hasText: fileName }).first().waitFor({ timeout: 15_000 });
    await page.keyboard.press('Enter');
    try {
      await page.locator(NOTEBOOK_EDITOR).first().waitFor({ state: 'visible', timeout: 8_000 });
      return;
    } catch {
      // Opened before the extension registered `contributes.notebooks`: a text editor. Close, retry.
      log(`open ${fileName}: not a notebook editor yet (attempt ${attempt}); reopening`);
      await command(page, 'View: Revert and Close Editor').catch(() => undefined);
      await page.waitForTimeout(2000);
    }
  }
  throw new Error(`${fileName} never opened as a notebook`);
}

/** Runs every cell: the editor toolbar's Run All, picking the CLIPN kernel if VS Code asks. */
export async function runAll(page: Page): Promise<void> {
  await page.locator('.notebook-toolbar-container >> visible=true').first().locator('[role="button"][aria-label="Run All"]').first().click({ timeout: 15_000 });
  const picker = page.locator('.quick-input-list .monaco-list-row', { hasText: 'CLIPN kernel' });
  if (await picker.first().isVisible({ timeout: 3000 }).catch(() => false)) await picker.first().click();
}

export async function saveAndClose(page: Page): Promise<void> {
  await command(page, 'File: Save');
  await page.waitForTimeout(500);
  await command(page, 'View: Close Editor');
  await page.locator(NOTEBOOK_EDITOR).first().waitFor({ state: 'detached', timeout: 10_000 }).catch(() => undefined);
}

/**
 * Scrolls the notebook from the top to the bottom so every output gets rendered (the cell list
 * is virtualised and outputs are drawn as their cells come near the viewport).
 */
export async function scrollThrough(page: Page): Promise<void> {
  const list = page.locator(NOTEBOOK_EDITOR).first().locator('.monaco-list').first();
  const box = await list.boundingBox();
  if (!box) return;
  // Over the cells' left gutter, not over a plot (a plot would take the wheel for itself).
  await page.mouse.move(box.x + 12, box.y + box.height / 2);
  await page.mouse.wheel(0, -200_000);
  await page.waitForTimeout(200);
  for (let i = 0; i < 50; i++) {
    await page.mouse.wheel(0, 700);
    await page.waitForTimeout(120);
  }
}

/** Number of figures that plotly has drawn (an SVG inside each figure box) in the outputs. */
export async function drawnFigures(page: Page): Promise<number> {
  return outputFrame(page).locator('.clipn-figure.js-plotly-plot:has(.main-svg)').count().catch(() => 0);
}

/** Switches the colour theme through its picker (e.g. "Dark Modern"). */
export async function setColorTheme(page: Page, theme: string): Promise<void> {
  await command(page, 'Preferences: Color Theme');
  const input = page.locator('.quick-input-widget input');
  await input.fill(theme);
  await page.locator('.quick-input-list .monaco-list-row', { hasText: theme }).first().waitFor({ timeout: 10_000 });
  await page.keyboard.press('Enter');
}

/**
 * Scrolls the notebook until the element (inside the output webview) is on screen, and returns
 * its box in page coordinates (what page.mouse uses).
 */
export async function bringIntoView(page: Page, target: import('playwright-core').Locator, viewportHeight: number): Promise<{ x: number; y: number; width: number; height: number }> {
  const list = page.locator(NOTEBOOK_EDITOR).first().locator('.monaco-list').first();
  const where = () => target.boundingBox({ timeout: 2000 }).catch(() => null);
  // Where the wheel goes, in turn while a step moves nothing: over the cells' left gutter, then
  // over the list's own vertical scrollbar (never a plot, which would take the wheel for itself).
  const anchors = async () => {
    const l = await list.boundingBox();
    if (!l) return [];
    const y = l.y + Math.min(l.height / 2, 400);
    return [{ x: l.x + 12, y, at: 'gutter' }, { x: l.x + l.width - 5, y, at: 'scrollbar' }];
  };
  // The list scrolls at once, but the output webview places its content a moment later (longer
  // on a busy machine): a step aimed from a box that has not moved yet overshoots, and the next
  // one overshoots back. So each step waits for the box to move, and steps shrink on every
  // change of direction. How far one wheel event scrolls differs (over the scrollbar it was
  // 50 px whatever the delta): a step sends as many events as the last step's yield asks for.
  let cap = 1200;
  let lastSign = 0;
  let stuck = 0;
  let perEvent = Infinity;
  let box = await where();
  for (const deadline = Date.now() + 120_000; Date.now() < deadline;) {
    if (box && box.y > 120 && box.y + box.height < viewportHeight - 40) return box;
    // Above: scroll up; below or not rendered yet: scroll down.
    const wanted = box ? box.y - viewportHeight / 3 : 600;
    if (box && lastSign !== 0 && Math.sign(wanted) !== lastSign) cap = Math.max(100, cap / 2);
    lastSign = Math.sign(wanted);
    const delta = Math.max(-cap, Math.min(cap, wanted));
    const events = Math.max(1, Math.min(40, Math.ceil(Math.abs(delta) / perEvent)));
    const points = await anchors();
    const anchor = points[stuck % Math.max(1, points.length)];
    if (anchor) await page.mouse.move(anchor.x, anchor.y);
    for (let e = 0; e < events; e++) await page.mouse.wheel(0, delta / events);
    const before = box;
    // Not rendered yet: nothing to wait for but the next rows.
    for (let waited = 0; waited < (before ? 2000 : 300); waited += 100) {
      await page.waitForTimeout(100);
      box = await where();
      if (before && box && Math.abs(box.y - before.y) > 1) break;
      if (!before && box) break;
    }
    const moved = before && box ? Math.abs(box.y - before.y) : 0;
    if (before && moved <= 1) stuck++;
    // Only a step that fell short says how far one event goes (a full one may have been capped).
    if (moved > 1 && moved < 0.9 * Math.abs(delta)) perEvent = Math.max(10, moved / events);
  }
  const under = await Promise.all((await anchors()).map(async (p) => `${p.at}: ${await page.evaluate(([x, y]) => {
    type Hit = { tagName: string; classList: Iterable<string> } | null;
    const e = (globalThis as unknown as { document: { elementFromPoint(x: number, y: number): Hit } }).document.elementFromPoint(x, y);
    return e ? `${e.tagName.toLowerCase()}.${[...e.classList].join('.')}` : 'nothing';
  }, [p.x, p.y] as const)}`));
  throw new Error(`could not scroll the element into view in 120 s (last box ${JSON.stringify(box)}; ${stuck} steps moved nothing; ~${Math.round(perEvent)} px per wheel event; under the wheel: ${under.join(', ') || 'no list'})`);
}
