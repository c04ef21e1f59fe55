// Bundles the Node side with esbuild into dist/extension/ (gitignored), the files the .vsix runs:
//   main.js                          the extension host entry (package.json "main"), `vscode` external
//   kernel/main.js                   the kernel child process the controller forks
//   kernel/preprocess-worker.js      its image-decoding worker thread
//   kernel/ablation-worker.js        the ablation's scoring worker thread
//   kernel/text-kv-worker.js         a text worker (shared prompt beginnings on the CPU)
//   cli/clipn.js                     the `clipn` command line
//   cli/preprocess-worker.js, cli/ablation-worker.js, cli/text-kv-worker.js   the same workers, beside the CLI bundle
// The layout mirrors out/extension/ on purpose: modules that find files from __dirname keep
// working unchanged in both (controller: `kernel/main.js` beside it; report/writer.ts:
// PACKAGE_ROOT three levels above cli/ and kernel/; preprocess-pool, variant-scorer and
// text-kv-pool: their workers beside the bundle that contains them).
//
// onnxruntime-node and sharp stay external: native modules, loaded from node_modules (the vsix
// ships them per platform, see scripts/package.sh). Everything else (yaml, umap-js and its ml-*
// dependencies, the engine) is inlined, so those packages are devDependencies.
//
// Outputs are written only when their bytes change, so an unchanged build keeps its mtimes
// (test/unit/package.test.ts reuses a .vsix newer than them). The esbuild metafile goes to
// build/esbuild-extension-meta.json (not shipped): the unit test reads which modules each
// entry reaches.
import { build } from 'esbuild';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const outdir = join(root, 'dist', 'extension');
const metaFile = join(root, 'build', 'esbuild-extension-meta.json');

const worker = 'extension/engine/preprocess-worker.ts';
const ablationWorker = 'extension/engine/analysis/ablation-worker.ts';
const textWorker = 'extension/engine/text-kv-worker.ts';
const result = await build({
  absWorkingDir: root,
  entryPoints: [
    { in: 'extension/main.ts', out: 'main' },
    { in: 'extension/kernel/main.ts', out: 'kernel/main' },
    { in: worker, out: 'kernel/preprocess-worker' },
    { in: ablationWorker, out: 'kernel/ablation-worker' },
    { in: textWorker, out: 'kernel/text-kv-worker' },
    { in: 'extension/cli/clipn.ts', out: 'cli/clipn' },
    { in: worker, out: 'cli/preprocess-worker' },
    { in: ablationWorker, out: 'cli/ablation-worker' },
    { in: textWorker, out: 'cli/text-kv-worker' },
  ],
  outdir,
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  external: ['vscode', 'onnxruntime-node', 'sharp'],
  // Readable bundles: stack traces in a user's log should name functions; the size gain of
  // minifying (a few hundred kB) is small beside onnxruntime's binaries.
  minify: false,
  sourcemap: false,
  legalComments: 'inline',
  metafile: true,
  write: false,
  logLevel: 'warning',
});

let written = 0;
const outputs = new Set();
for (const file of result.outputFiles) {
  outputs.add(file.path);
  const same = existsSync(file.path) && Buffer.compare(readFileSync(file.path), Buffer.from(file.contents)) === 0;
  if (same) continue;
  mkdirSync(dirname(file.path), { recursive: true });
  writeFileSync(file.path, file.contents);
  written++;
}

// Files an earlier layout left behind would otherwise ship in the vsix.
function removeStale(dir) {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) {
      removeStale(p);
      if (readdirSync(p).length === 0) rmSync(p, { recursive: true });
    } else if (!outputs.has(p)) {
      rmSync(p);
    }
  }
}
removeStale(outdir);

mkdirSync(dirname(metaFile), { recursive: true });
writeFileSync(metaFile, JSON.stringify(result.metafile));
const sizes = result.outputFiles.map((f) => `${relative(root, f.path)} ${(f.contents.length / 1024).toFixed(0)} kB`);
console.log(`build-extension: ${sizes.join(', ')} (${written} changed)`);
