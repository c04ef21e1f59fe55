// The HTML report's page script (bundled with plotly into dist/webview/report.js and inlined in
// the report by extension/report/writer.ts). It draws every embedded view with the editor's
// renderer, so a report shows what the notebook shows, then marks <body> as ready for anyone
// waiting on it (see extension/report/contract.ts).
import { CELL_ATTR, OUTPUT_CLASS, REPORT_FIGURES_DRAWN, REPORT_STATE, VIEW_SCRIPT_TYPE } from '../../extension/report/contract';
import { renderView } from './render';

function base64Bytes(text: string): Uint8Array {
  const binary = atob(text.replace(/\s+/g, ''));
  const out = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
  return out;
}

async function renderOne(source: HTMLScriptElement): Promise<boolean> {
  const cell = source.getAttribute(CELL_ATTR) ?? '';
  const target = document.querySelector<HTMLElement>(`.${OUTPUT_CLASS}[${CELL_ATTR}="${CSS.escape(cell)}"]`);
  if (!target) return false;
  try {
    await renderView(base64Bytes(source.textContent ?? ''), target);
    return true;
  } catch (err) {
    const message = document.createElement('div');
    message.className = 'clipn-error';
    message.textContent = `Cannot show this output: ${(err as Error)?.message ?? String(err)}`;
    target.replaceChildren(message);
    return false;
  }
}

async function renderReport(): Promise<void> {
  document.body.setAttribute(REPORT_STATE, 'rendering');
  const sources = [...document.querySelectorAll<HTMLScriptElement>(`script[type="${VIEW_SCRIPT_TYPE}"]`)];
  const results = await Promise.all(sources.map(renderOne));
  document.body.setAttribute(REPORT_FIGURES_DRAWN, String(document.querySelectorAll('.js-plotly-plot').length));
  document.body.setAttribute(REPORT_STATE, results.every(Boolean) ? 'ready' : 'failed');
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', () => void renderReport());
else void renderReport();
