// The packaged extension (build/clipn-lab-linux-x64.vsix, scripts/package.sh):
//   - it carries linux/x64 native code only (onnxruntime, sharp, and the ATD kernel where the build
//     compiled it), the esbuild bundles, and every file of the bundled
//     model that loading checks (clipn.json's `files`, the .pt checkpoint and parity/ included:
//     loading fails when a listed file is missing), and nothing of tsc's output, the tests or
//     the sources; it stays under SIZE_BOUND_MIB;
//   - an unpacked copy runs on its own, with no repository node_modules in reach: the bundled
//     CLI runs the getting-started notebook into an HTML report, the bundled kernel process
//     loads the bundled model, and the bundled preprocessing worker decodes an image exactly as
//     the engine does in-process;
//   - the extension entry's bundle reaches no onnxruntime-node, sharp or engine module (they
//     load in the kernel process on the first cell run, never at activation).
// scripts/build-extension.mjs refreshes dist/extension first (it rewrites only changed files);
// then build/'s .vsix is reused when newer than everything that goes into it, else a fresh one
// is packaged into a temporary folder (about 15 s).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { builtinModules } from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { KernelProcess } from '../../extension/kernel-process';
import { preprocessImage, type PreprocessConfig } from '../../extension/engine/preprocess';
import { unpackPayload, type KernelSettings, type ViewPayload } from '../../extension/protocol';
import { REPO_ROOT } from './helpers/python';

const TARGET = 'linux-x64';
const VSIX = path.join(REPO_ROOT, 'build', `clipn-lab-${TARGET}.vsix`);
/** All of onnxruntime's and libvips' linux-x64 binaries and the model come to ~45 MiB zipped. */
const SIZE_BOUND_MIB = 50;
const BUNDLES = ['main.js', 'kernel/main.js', 'kernel/preprocess-worker.js', 'kernel/ablation-worker.js', 'kernel/text-kv-worker.js', 'cli/clipn.js', 'cli/preprocess-worker.js', 'cli/ablation-worker.js', 'cli/text-kv-worker.js'];
const MANIFEST = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'models', 'default', 'clipn.json'), 'utf8')) as {
  files: Record<string, string>;
  preprocess: PreprocessConfig;
};

// ---------------------------------------------------------------------------------------------
// A .vsix is a zip: the central directory lists the entries, each local header precedes its
// data (stored or deflated). No zip64: a vsix stays far below 4 GiB and 65,535 entries.

interface ZipEntry {
  name: string;
  method: number;
  compressedSize: number;
  localOffset: number;
}

function zipEntries(zip: Buffer): ZipEntry[] {
  const eocd = zip.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
  assert.ok(eocd >= 0, 'no end-of-central-directory record');
  const count = zip.readUInt16LE(eocd + 10);
  let p = zip.readUInt32LE(eocd + 16);
  const entries: ZipEntry[] = [];
  for (let i = 0; i < count; i++) {
    assert.equal(zip.readUInt32LE(p), 0x02014b50, `central directory entry ${i}`);
    const nameLen = zip.readUInt16LE(p + 28);
    entries.push({
      name: zip.toString('utf8', p + 46, p + 46 + nameLen),
      method: zip.readUInt16LE(p + 10),
      compressedSize: zip.readUInt32LE(p + 20),
      localOffset: zip.readUInt32LE(p + 42),
    });
    p += 46 + nameLen + zip.readUInt16LE(p + 30) + zip.readUInt16LE(p + 32);
  }
  return entries;
}

function zipData(zip: Buffer, e: ZipEntry): Buffer {
  const at = e.localOffset;
  assert.equal(zip.readUInt32LE(at), 0x04034b50, `local header of ${e.name}`);
  const start = at + 30 + zip.readUInt16LE(at + 26) + zip.readUInt16LE(at + 28);
  const raw = zip.subarray(start, start + e.compressedSize);
  if (e.method === 0) return raw;
  assert.equal(e.method, 8, `${e.name}: compression method ${e.method}`);
  return zlib.inflateRawSync(raw);
}

// ---------------------------------------------------------------------------------------------

function newestMtime(p: string): number {
  const st = fs.statSync(p);
  if (!st.isDirectory()) return st.mtimeMs;
  return Math.max(st.mtimeMs, ...fs.readdirSync(p).map((n) => newestMtime(path.join(p, n))));
}

let vsix: { zip: Buffer; entries: ZipEntry[]; names: Set<string> } | undefined;

/**
 * build/clipn-lab-linux-x64.vsix when it is newer than everything it is made from, else a fresh
 * one packaged into a temporary folder (never over build/'s: `npm run package` or the e2e test
 * may be writing that one at the same time).
 */
function packaged(): NonNullable<typeof vsix> {
  if (vsix) return vsix;
  execFileSync(process.execPath, [path.join(REPO_ROOT, 'scripts', 'build-extension.mjs')], { cwd: REPO_ROOT, stdio: 'ignore' });
  for (const f of ['renderer.js', 'report.js']) {
    assert.ok(fs.existsSync(path.join(REPO_ROOT, 'dist', 'webview', f)), `dist/webview/${f} is missing: run \`npm run build\``);
  }
  const inputs = ['dist', 'models/default', 'samples', 'extension/language', 'package.json', '.vscodeignore', 'scripts/package.sh', 'README.md', 'node_modules/onnxruntime-node/package.json', 'node_modules/sharp/package.json'];
  if (fs.existsSync(path.join(REPO_ROOT, 'native', 'build'))) inputs.push('native/build');
  const newest = Math.max(...inputs.map((p) => newestMtime(path.join(REPO_ROOT, p))));
  let zip: Buffer;
  if (fs.existsSync(VSIX) && fs.statSync(VSIX).mtimeMs > newest) {
    console.log(`reusing ${path.relative(REPO_ROOT, VSIX)} (newer than everything packaged into it)`);
    zip = fs.readFileSync(VSIX);
  } else {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clipn-vsix-build-'));
    const file = path.join(dir, path.basename(VSIX));
    const t = performance.now();
    try {
      execFileSync('sh', [path.join(REPO_ROOT, 'scripts', 'package.sh'), TARGET, '--out', file], {
        cwd: REPO_ROOT,
        stdio: 'ignore',
        // dist/ was just built; the full `npm run build` would rewrite out/ under the running tests.
        env: { ...process.env, CLIPN_SKIP_PREPUBLISH_BUILD: '1' },
      });
      zip = fs.readFileSync(file);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
    console.log(`packaged a fresh ${TARGET} vsix in ${((performance.now() - t) / 1000).toFixed(1)} s`);
  }
  const entries = zipEntries(zip);
  vsix = { zip, entries, names: new Set(entries.map((e) => e.name)) };
  return vsix;
}

test('the linux-x64 vsix holds linux/x64 native code only, the bundles and the model files loading needs, no sources', () => {
  const { zip, entries, names } = packaged();
  const mib = zip.length / 2 ** 20;
  console.log(`${TARGET} vsix: ${mib.toFixed(1)} MiB, ${entries.length} entries (bound ${SIZE_BOUND_MIB} MiB)`);
  assert.ok(mib < SIZE_BOUND_MIB, `${mib.toFixed(1)} MiB >= ${SIZE_BOUND_MIB} MiB`);
  const files = [...names].filter((n) => n.startsWith('extension/')).map((n) => n.slice('extension/'.length));
  assert.equal(files.length, names.size - 2, 'only extension/ plus the two vsix manifests');

  const ort = files.filter((f) => f.startsWith('node_modules/onnxruntime-node/bin/'));
  assert.deepEqual(ort.filter((f) => !/^node_modules\/onnxruntime-node\/bin\/napi-v\d+\/linux\/x64\/[^/]+$/.test(f)), [], 'onnxruntime binaries of other platforms');
  assert.ok(ort.some((f) => f.endsWith('/onnxruntime_binding.node')) && ort.some((f) => /\/libonnxruntime\.so/.test(f)), `linux/x64 onnxruntime present: ${ort.join(', ')}`);
  const img = new Set(files.filter((f) => f.startsWith('node_modules/@img/')).map((f) => f.split('/')[2]));
  assert.deepEqual([...img].sort(), ['colour', 'sharp-libvips-linux-x64', 'sharp-linux-x64']);

  const forbidden = [
    /^(out|test|bench|scripts|webview|docs|build)\//,
    /^extension\/(?!language\/[^/]+\.json$)/, // the sources; only the language files are read at run time
    /^models\/(?!default\/)/,
    /^native\/(?!build\/[^/]+\.node$)/, // the kernel's source; its build output is shipped
    /\.(ts|map|py|vsix)$/,
    /^node_modules\/(yaml|umap-js|ml-matrix|adm-zip|global-agent)\//, // inlined in the bundles / install-time only
  ];
  assert.deepEqual(files.filter((f) => forbidden.some((re) => re.test(f))), []);

  const required = [
    'package.json',
    ...BUNDLES.map((b) => `dist/extension/${b}`),
    'dist/webview/renderer.js',
    'dist/webview/report.js',
    'extension/language/language-configuration.json',
    'extension/language/clipn.tmLanguage.json',
    'samples/getting-started.clipnb',
    'models/default/clipn.json',
    ...Object.keys(MANIFEST.files).map((f) => `models/default/${f}`),
    // Where the build compiled it (native-kernels.test.ts checks that it does wherever it can).
    ...(fs.existsSync(path.join(REPO_ROOT, 'native', 'build', 'ablation-kernels.node')) ? ['native/build/ablation-kernels.node'] : []),
  ];
  assert.deepEqual(required.filter((f) => !files.includes(f)), []);
  const manifest = JSON.parse(zipData(zip, entries.find((e) => e.name === 'extension/package.json')!).toString('utf8')) as { main: string; activationEvents: string[] };
  assert.equal(manifest.main, './dist/extension/main.js');
  assert.ok(files.includes(manifest.main.slice(2)));
  assert.deepEqual(manifest.activationEvents, ['onNotebook:clipn-notebook']);
});

test('an unpacked copy runs on its own: the bundled CLI, kernel process and preprocessing worker', async () => {
  const { zip, entries } = packaged();
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'clipn-vsix-'));
  assert.ok(path.relative(REPO_ROOT, tmp).startsWith('..'), 'outside the repository: no node_modules of ours above it');
  const ext = path.join(tmp, 'extension');
  try {
    for (const e of entries) {
      if (!e.name.startsWith('extension/') || e.name.endsWith('/')) continue;
      const to = path.join(tmp, e.name);
      fs.mkdirSync(path.dirname(to), { recursive: true });
      fs.writeFileSync(to, zipData(zip, e));
    }
    const env: NodeJS.ProcessEnv = { ...process.env, CLIPN_CACHE: path.join(tmp, 'cache') };
    delete env.NODE_PATH;

    // CLI: PACKAGE_ROOT resolves to the copy, so models/default and dist/webview/report.js are the copy's.
    const html = path.join(tmp, 'report.html');
    const out = execFileSync(process.execPath, ['dist/extension/cli/clipn.js', 'run', 'samples/getting-started.clipnb', '--html', html, '--providers', 'cpu'], { cwd: ext, env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    const notebook = JSON.parse(fs.readFileSync(path.join(ext, 'samples', 'getting-started.clipnb'), 'utf8')) as { cells: { cell_type: string }[] };
    const codeCells = notebook.cells.filter((c) => c.cell_type === 'code').length;
    assert.match(out, new RegExp(`\\b${codeCells} of ${codeCells} code cells ran\\b`));
    const page = fs.readFileSync(html, 'utf8');
    assert.ok(page.includes(path.join(ext, 'models', 'default')), 'the report names the copy\'s bundled model');
    assert.ok(page.includes(fs.readFileSync(path.join(ext, 'dist', 'webview', 'report.js'), 'utf8').slice(0, 400)), 'the report inlines the copy\'s page script');

    // Kernel process: forked from the copy, loads onnxruntime-node from the copy's node_modules.
    const k = new KernelProcess(path.join(ext, 'dist', 'extension', 'kernel', 'main.js'));
    try {
      await k.ready;
      const settings: KernelSettings = { modelFolder: path.join(ext, 'models', 'default'), providers: ['cpu'], batchSize: 16, threads: 1, cacheFolder: path.join(tmp, 'kcache') };
      const o = await k.run('model:\n', path.join(ext, 'samples'), 1, settings).outcome;
      assert.equal(o.type, 'result', JSON.stringify(o));
      assert.equal(unpackPayload<ViewPayload>((o as { view: Uint8Array }).view).kind, 'model');
    } finally {
      await k.shutdown();
    }

    // Worker: the pool's protocol (preprocess-pool.ts), in a separate process so that only the
    // copy's sharp loads there; exact equality with the in-process engine (same code, same libvips).
    const idDir = path.join(ext, 'samples', 'images', 'id');
    const image = path.join(idDir, (fs.readdirSync(idDir, { recursive: true }) as string[]).filter((f) => /\.(png|jpe?g)$/i.test(f)).sort()[0]);
    const script = `
      const { Worker } = require('node:worker_threads');
      const [file, image, cfg] = process.argv.slice(1);
      const w = new Worker(file, { workerData: { perWorker: 1 } });
      w.on('error', (e) => { console.error(e); process.exit(1); });
      w.on('message', (m) => {
        if (m.t === 'ready') return w.postMessage({ t: 'task', id: 1, job: 1, cfg: JSON.parse(cfg), name: 'x', path: image, solo: false });
        if (!m.data) { console.error(m.reason); process.exit(1); }
        process.stdout.write(Buffer.from(m.data).toString('base64'));
        w.postMessage({ t: 'close', drain: true });
      });`;
    const worker = path.join(ext, 'dist', 'extension', 'kernel', 'preprocess-worker.js');
    const b64 = execFileSync(process.execPath, ['-e', script, worker, image, JSON.stringify(MANIFEST.preprocess)], { cwd: tmp, env, encoding: 'utf8' });
    const bytes = Buffer.from(b64, 'base64');
    const fromWorker = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
    const inProcess = await preprocessImage(path.join(REPO_ROOT, path.relative(ext, image)), MANIFEST.preprocess);
    assert.equal(fromWorker.length, 3 * MANIFEST.preprocess.size ** 2);
    assert.deepEqual(fromWorker, inProcess);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});

test('activation loads no onnxruntime, sharp or engine module: what the extension entry bundle reaches', () => {
  packaged(); // runs scripts/build-extension.mjs, which writes the metafile
  const meta = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'build', 'esbuild-extension-meta.json'), 'utf8')) as {
    outputs: Record<string, { inputs: Record<string, unknown>; imports: { path: string; external?: boolean }[] }>;
  };
  const reach = (out: string) => {
    const o = meta.outputs[out];
    assert.ok(o, `${out} in the metafile`);
    return { inputs: Object.keys(o.inputs), externals: o.imports.filter((i) => i.external).map((i) => i.path) };
  };
  const heavyInput = /^extension\/(engine|kernel|cli)\/|node_modules\/(onnxruntime|sharp|@img)/;
  const heavyExternal = /^(onnxruntime-node|sharp)(\/|$)/;
  const main = reach('dist/extension/main.js');
  assert.ok(main.inputs.includes('extension/controller.ts') && main.inputs.some((i) => i.startsWith('node_modules/yaml/')), 'the entry bundles the controller and yaml');
  assert.deepEqual(main.inputs.filter((i) => heavyInput.test(i)), []);
  assert.deepEqual(main.externals.filter((p) => heavyExternal.test(p)), []);
  assert.ok(main.externals.includes('vscode'));
  assert.deepEqual(main.externals.filter((p) => p !== 'vscode' && !p.startsWith('node:') && !builtinModules.includes(p)), [], 'only vscode and Node built-ins stay external');
  // The same check on the kernel bundle finds them: the patterns do match what loads there.
  const kernel = reach('dist/extension/kernel/main.js');
  assert.ok(kernel.inputs.includes('extension/engine/encoder.ts') && kernel.inputs.includes('extension/engine/backend.ts'));
  assert.deepEqual(['onnxruntime-node', 'sharp'].filter((p) => !kernel.externals.includes(p)), []);
  assert.ok(!kernel.externals.includes('vscode'), 'the kernel process has no vscode module');
});
