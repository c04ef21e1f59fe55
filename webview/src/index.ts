// Renderer entry (contributes.notebookRenderer): small on purpose. The view module loads with
// the first output, and plotly.js only with the first figure (see figure.ts).
import type { ActivationFunction } from './vscode-renderer';
import { setMessageTarget } from './host';

const roots = new Map<string, HTMLElement>();

export const activate: ActivationFunction = (context) => {
  // User actions (open an image, save a selection, insert a cell) go to the extension.
  if (context.postMessage) setMessageTarget((msg) => context.postMessage!(msg));
  return api;
};

const api: ReturnType<ActivationFunction> = {
  async renderOutputItem(item, element, signal) {
    roots.set(item.id, element);
    const { renderView } = await import('./render');
    if (signal.aborted) return;
    await renderView(item.data(), element);
  },
  disposeOutputItem(id) {
    const targets = id === undefined ? [...roots.entries()] : roots.has(id) ? [[id, roots.get(id)!] as const] : [];
    for (const [key, element] of targets) {
      roots.delete(key);
      void import('./figure').then((f) => f.disposeFigures(element));
    }
  },
};
