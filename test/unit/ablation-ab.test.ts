// The A/B driver's reading of ablation.js's output (bench/ablation-ab.ts): the lines it needs are
// those ablation.js prints for a first run.
import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { parseFirstRun } from '../../bench/ablation-ab';

const FIRST_RUN = `machine: AMD EPYC, 2 logical CPUs (availableParallelism 2), avx2 fma, 24 GiB, node v20.20.2
128-template pool: 3.24 s wall (CPU 6.18 s) = text 1.19 s (13300 prompts, 11163/s) + setup 0.00 s + rows 1.32 s + greedy 0.58 s (384 variants scored, 0 from the memo)
  full pool: CTW AUROC 0.8512, ATD AUROC 0.8475, ATD FPR95 0.5460; greedy 1 steps (no-improvement), best ATD auroc 0.8935 with 1 prompts
16 learned prompts: 2.26 s wall (CPU 4.27 s) = text 2.07 s (24500 prompts, 11810/s) + setup 0.00 s + rows 0.06 s + greedy 0.09 s (48 variants scored, 0 from the memo)
total: 5.51 s wall (text encoding 3.27 s, the rest 2.24 s)
re-run, one template edited: 0.76 s wall (CPU 1.35 s) = text 0.08 s (13300 prompts, 170218/s) + setup 0.00 s + rows 0.57 s + greedy 0.03 s (130 variants scored, 254 from the memo)
re-run, 16 learned prompts: 0.11 s wall (CPU 0.14 s) = text 0.08 s (24500 prompts, 305296/s) + setup 0.00 s + rows 0.00 s + greedy 0.00 s (0 variants scored, 48 from the memo)
`;

test('parseFirstRun: the total wall and both pools\' CPU of the first run, not the re-run\'s', () => {
  const r = parseFirstRun(FIRST_RUN, 'sample');
  assert.equal(r.wall, 5.51);
  assert.ok(Math.abs(r.cpu - (6.18 + 4.27)) < 1e-12, `cpu ${r.cpu}`);
});

test('parseFirstRun: output without the first-run lines is an error naming the script', () => {
  assert.throws(() => parseFirstRun('machine: x\nError: model not found\n', 'other/out/bench/ablation.js'), /other\/out\/bench\/ablation\.js: no first-run figures/);
  assert.throws(() => parseFirstRun(FIRST_RUN.replace(/^16 learned.*\n/m, ''), 'sample'), /no first-run figures/);
});
