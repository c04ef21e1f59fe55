// The GPU bench's command line (bench/gpu.ts).
import * as os from 'node:os';

export interface Options {
  models: string[];
  providers: string[];
  batches: number[];
  precisions: Array<'fp32' | 'fp16'>;
  cpuBatches: number[];
  cpuPrecisions: Array<'fp32' | 'fp16'>;
  warmup: number;
  reps: number;
  budgetS: number;
  deadlineS: number;
  e2e: number;
  e2eBatch: number;
  e2ePrecision: 'fp32' | 'fp16';
  e2eWorkers: number;
  torch?: string;
  json?: string;
  report?: string;
  gpu: string;
  peakFp16?: number;
  peakFp32?: number;
  threads?: number;
}

export const USAGE = `usage: node out/bench/gpu.js --model DIR [--model DIR] [--providers webgpu,cpu] [--gpu NAME]
  [--batches 32,64,128,256] [--precisions fp16,fp32] [--cpu-batches 16] [--cpu-precisions fp32]
  [--warmup 2] [--reps 5] [--budget-s 20] [--deadline-s 0] [--threads N]
  [--e2e 0|N] [--e2e-batch 128] [--e2e-precision fp16] [--e2e-workers cores-1]
  [--torch torch.json] [--json out.json] [--report out.txt] [--peak-fp16 TFLOPS] [--peak-fp32 TFLOPS]`;

export function parseOptions(argv: string[]): Options {
  const many = new Map<string, string[]>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--help' || a === '-h') {
      console.log(USAGE);
      process.exit(0);
    }
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${a}\n${USAGE}`);
    const eq = a.indexOf('=');
    const key = eq > 0 ? a.slice(2, eq) : a.slice(2);
    const value = eq > 0 ? a.slice(eq + 1) : argv[++i];
    if (value === undefined) throw new Error(`${a} needs a value\n${USAGE}`);
    many.set(key, [...(many.get(key) ?? []), value]);
  }
  const one = (k: string, d?: string) => many.get(k)?.at(-1) ?? d;
  const list = (k: string, d: string) => one(k, d)!.split(',').map((s) => s.trim()).filter(Boolean);
  const ints = (k: string, d: string) =>
    list(k, d).map((s) => {
      const n = Number(s);
      if (!Number.isInteger(n) || n < 1) throw new Error(`--${k}: ${s} is not a positive integer`);
      return n;
    });
  const num = (k: string, d: string) => {
    const n = Number(one(k, d));
    if (!Number.isFinite(n) || n < 0) throw new Error(`--${k}: ${one(k, d)} is not a number >= 0`);
    return n;
  };
  const precisions = (k: string, d: string) =>
    list(k, d).map((p) => {
      if (p !== 'fp32' && p !== 'fp16') throw new Error(`--${k}: ${p} is not fp32 or fp16`);
      return p;
    });
  const models = many.get('model') ?? [];
  if (models.length === 0) throw new Error(`give at least one --model folder\n${USAGE}`);
  const opt = (k: string) => (one(k) === undefined ? undefined : num(k, '0'));
  return {
    models,
    providers: list('providers', 'webgpu,cpu').map((p) => p.toLowerCase()),
    batches: ints('batches', '32,64,128,256'),
    precisions: precisions('precisions', 'fp16,fp32'),
    cpuBatches: ints('cpu-batches', '16'),
    cpuPrecisions: precisions('cpu-precisions', 'fp32'),
    warmup: num('warmup', '2'),
    reps: Math.max(1, num('reps', '5')),
    budgetS: num('budget-s', '20'),
    deadlineS: num('deadline-s', '0'),
    e2e: num('e2e', '0'),
    e2eBatch: ints('e2e-batch', '128')[0],
    e2ePrecision: precisions('e2e-precision', 'fp16')[0],
    e2eWorkers: Math.max(1, num('e2e-workers', String(Math.max(1, os.availableParallelism() - 1)))),
    torch: one('torch'),
    json: one('json'),
    report: one('report'),
    gpu: one('gpu', '') ?? '',
    peakFp16: opt('peak-fp16'),
    peakFp32: opt('peak-fp32'),
    threads: opt('threads'),
  };
}

