// Builds the optional native module native/build/ablation-kernels.node (native/ablation-kernels.cc
// and native/text-tower.cc, made a Node-API module by native/node-module.cc: the ablation scoring
// workers' fused ATD sums, exact margin dots, score sort and metrics walk, and the "no" text tower
// after a shared past; extension/engine/analysis/native-kernels.ts) with the system's g++ against
// Node's own Node-API headers. It is optional: without a compiler or headers, or on a CPU other
// than x86-64, nothing is built and the ablation uses onnxruntime's graphs and its WebAssembly
// kernel, with a note here.
// `--require` makes a missing compiler or a failed build an error.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const sources = ['ablation-kernels.cc', 'text-tower.cc', 'node-module.cc'].map((f) => join(root, 'native', f));
const inputs = [...sources, ...['ablation-kernels.h', 'micro-kernel.h', 'simd-math.h'].map((f) => join(root, 'native', f)), fileURLToPath(import.meta.url)];
const target = join(root, 'native', 'build', 'ablation-kernels.node');
const required = process.argv.includes('--require');

function skip(why) {
  const line = `native: ${why}; the ablation uses onnxruntime's graphs and its WebAssembly kernel instead`;
  if (required) {
    console.error(line);
    process.exit(1);
  }
  console.log(line);
  process.exit(0);
}

if (process.arch !== 'x64') skip(`no kernel for ${process.arch}`);
const headers = join(dirname(process.execPath), '..', 'include', 'node');
if (!existsSync(join(headers, 'node_api.h'))) skip(`no Node-API headers at ${headers}`);
if (spawnSync('g++', ['--version'], { stdio: 'ignore' }).status !== 0) skip('no g++ (Debian: apt-get install g++)');
if (existsSync(target) && statSync(target).mtimeMs >= Math.max(...inputs.map((f) => statSync(f).mtimeMs))) process.exit(0);

mkdirSync(dirname(target), { recursive: true });
// -O2 without -ffast-math, and no contraction of a multiply and an add into one FMA (GNU C++
// allows it by default): the margin dots must round as JavaScript does.
const args = ['-O2', '-std=c++17', '-ffp-contract=off', '-fPIC', '-shared', '-fvisibility=hidden', '-I', headers, ...sources, '-o', target];
const run = spawnSync('g++', args, { stdio: 'inherit' });
if (run.status !== 0) skip(`g++ failed (exit ${run.status})`);
