// Bundles the notebook renderer (webview/) with esbuild into dist/webview/ (gitignored; never
// committed). ESM with code splitting, so plotly.js lands in its own chunk that the renderer
// imports only when the first figure is drawn.
import { build } from 'esbuild';
import { rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const outdir = join(root, 'dist', 'webview');
rmSync(outdir, { recursive: true, force: true });
await build({
  absWorkingDir: root,
  entryPoints: { renderer: 'webview/src/index.ts' },
  bundle: true,
  splitting: true,
  format: 'esm',
  target: 'es2022',
  platform: 'browser',
  outdir,
  minify: true,
  sourcemap: false,
  legalComments: 'linked',
  logLevel: 'warning',
  chunkNames: 'chunks/[name]-[hash]',
});
