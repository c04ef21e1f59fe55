// Bundles the webview code with esbuild into dist/webview/ (gitignored; never committed):
//  - renderer.js: the notebook renderer, ESM with code splitting, so plotly.js lands in its own
//    chunk that the renderer imports only when the first figure is drawn;
//  - report.js: the HTML report's page script (webview/src/report.ts), one IIFE with plotly.js
//    inside (no splitting: the dynamic import is inlined), which `clipn run --html` embeds once
//    in each report so the page works offline.
import { build } from 'esbuild';
import { rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const outdir = join(root, 'dist', 'webview');
rmSync(outdir, { recursive: true, force: true });
const common = {
  absWorkingDir: root,
  bundle: true,
  target: 'es2022',
  platform: 'browser',
  minify: true,
  sourcemap: false,
  logLevel: 'warning',
};
await build({
  ...common,
  entryPoints: { renderer: 'webview/src/index.ts' },
  splitting: true,
  format: 'esm',
  outdir,
  legalComments: 'linked',
  chunkNames: 'chunks/[name]-[hash]',
});
await build({
  ...common,
  entryPoints: ['webview/src/report.ts'],
  format: 'iife',
  outfile: join(outdir, 'report.js'),
  // The report is a single file: the licences of what it bundles (plotly.js) travel inside it.
  legalComments: 'eof',
});
