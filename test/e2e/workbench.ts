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
  await page.keyboard.press('F1');
  const input = page.locator('.quick-input-widget input');
  await input.waitFor({ state: 'visible', timeout: 10_000 });
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
  const lbox = await list.boundingBox();
  const where = () => target.boundingBox({ timeout: 2000 }).catch(() => null);
  // The list scrolls at once, but the output webview places its content a moment later (longer
  // on a busy machine): a step aimed from a box that has not moved yet overshoots, and the next
  // one overshoots back. So each step waits for the box to move, and steps shrink on every
  // change of direction.
  let cap = 1200;
  let lastSign = 0;
  let box = await where();
  for (let i = 0; i < 60; i++) {
    if (box && box.y > 120 && box.y + box.height < viewportHeight - 40) return box;
    // Above: scroll up; below or not rendered yet: scroll down.
    const wanted = box ? box.y - viewportHeight / 3 : 600;
    if (box && lastSign !== 0 && Math.sign(wanted) !== lastSign) cap = Math.max(100, cap / 2);
    lastSign = Math.sign(wanted);
    // Over the cells' left gutter, not over a plot (a plot would take the wheel for itself).
    if (lbox) await page.mouse.move(lbox.x + 12, lbox.y + Math.min(lbox.height / 2, 400));
    await page.mouse.wheel(0, Math.max(-cap, Math.min(cap, wanted)));
    const before = box;
    // Not rendered yet: nothing to wait for but the next rows.
    for (let waited = 0; waited < (before ? 2000 : 300); waited += 100) {
      await page.waitForTimeout(100);
      box = await where();
      if (before && box && Math.abs(box.y - before.y) > 1) break;
      if (!before && box) break;
    }
  }
  throw new Error(`could not scroll the element into view (last box ${JSON.stringify(box)})`);
}
