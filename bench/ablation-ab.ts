// The ablation bench's first run, this checkout against another, in alternating processes: on
// this shared machine single runs move by 10-20% from one minute to the next (bench/README
// "Ablation"), more than most changes gain, so only pairs run back to back tell two versions apart.
//
//   node out/bench/ablation-ab.js --base /path/to/other/checkout [--pairs 5] [--args="--templates 64"]
//
// The other checkout must be built (its out/bench/ablation.js). Each pair runs both, in turns
// (base first in odd pairs, this first in even ones), each `ablation.js --naive 0 --rounds 1` in a
// fresh process; printed per pair: first-run wall and CPU seconds (both pools, all threads), then
// the means, the mean paired difference with its standard error, and the ratio of means.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { args, printMachine } from './machine';

interface FirstRun { wall: number; cpu: number }

/** The first run's wall seconds ("total:") and the two pools' CPU seconds from ablation.js's output. */
export function parseFirstRun(output: string, what: string): FirstRun {
  const total = /^total: ([\d.]+) s wall/m.exec(output);
  const cpus = [...output.matchAll(/^(?:\d+-template pool|\d+ learned prompts): [\d.]+ s wall \(CPU ([\d.]+) s\)/gm)].map((m) => Number(m[1]));
  if (!total || cpus.length !== 2) throw new Error(`${what}: no first-run figures in its output (a "total:" line and two pool lines):\n${output.slice(-2000)}`);
  return { wall: Number(total[1]), cpu: cpus[0] + cpus[1] };
}

function runOnce(root: string, extra: string[]): FirstRun {
  const script = path.join(root, 'out', 'bench', 'ablation.js');
  const output = execFileSync(process.execPath, [script, '--naive', '0', '--rounds', '1', ...extra], { cwd: root, encoding: 'utf8', maxBuffer: 64 * 2 ** 20 });
  return parseFirstRun(output, script);
}

const mean = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
function meanAndError(xs: readonly number[]): string {
  const m = mean(xs);
  const sign = m >= 0 ? '+' : '';
  if (xs.length < 2) return `${sign}${m.toFixed(3)} s (one pair: no standard error)`;
  const se = Math.sqrt(xs.reduce((a, x) => a + (x - m) ** 2, 0) / (xs.length - 1) / xs.length);
  return `${sign}${m.toFixed(3)} s ± ${se.toFixed(3)} s (mean ± standard error)`;
}

function main(): void {
  const a = args();
  const base = a.get('base');
  if (!base) throw new Error('--base: the other checkout (built) to compare this one with');
  const roots = { base: path.resolve(base), this: path.resolve(__dirname, '..', '..') };
  for (const [name, root] of Object.entries(roots)) {
    if (!fs.existsSync(path.join(root, 'out', 'bench', 'ablation.js'))) throw new Error(`${name} checkout ${root}: out/bench/ablation.js not found (build it with tsc first)`);
  }
  const pairs = Number(a.get('pairs') ?? 5);
  if (!Number.isInteger(pairs) || pairs < 1) throw new Error(`--pairs ${a.get('pairs')}: need a whole number >= 1`);
  const extra = (a.get('args') ?? '').split(/\s+/).filter(Boolean);
  printMachine();
  console.log(`base ${roots.base}, this ${roots.this}, ${pairs} pair(s), ablation.js --naive 0 --rounds 1 ${extra.join(' ')}`);
  const runs: Array<{ base: FirstRun; this: FirstRun }> = [];
  for (let p = 0; p < pairs; p++) {
    const order: Array<'base' | 'this'> = p % 2 === 0 ? ['base', 'this'] : ['this', 'base'];
    const got = {} as { base: FirstRun; this: FirstRun };
    for (const which of order) got[which] = runOnce(roots[which], extra);
    runs.push(got);
    console.log(`pair ${p + 1} (${order.join(' then ')}): base ${got.base.wall.toFixed(2)} s (CPU ${got.base.cpu.toFixed(2)} s), this ${got.this.wall.toFixed(2)} s (CPU ${got.this.cpu.toFixed(2)} s)`);
  }
  for (const key of ['wall', 'cpu'] as const) {
    const [b, t] = [runs.map((r) => r.base[key]), runs.map((r) => r.this[key])];
    console.log(`${key === 'wall' ? 'wall' : 'CPU '}: base mean ${mean(b).toFixed(2)} s, this mean ${mean(t).toFixed(2)} s; this - base per pair ${meanAndError(runs.map((r) => r.this[key] - r.base[key]))}; ratio this / base ${(mean(t) / mean(b)).toFixed(3)}`);
  }
}

if (require.main === module) {
  try {
    main();
  } catch (err) {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  }
}
