// What the GPU bench (bench/gpu.ts) records, and its summary.

export const r1 = (x: number) => Math.round(x * 10) / 10;
export const r2 = (x: number) => Math.round(x * 100) / 100;
export const firstLine = (e: unknown) => String((e as Error)?.message ?? e).split('\n')[0].slice(0, 400);

export interface TorchRow {
  precision: string;
  batch: number;
  mode: string;
  images_per_s: number;
}
export interface TorchFile {
  device?: string;
  arch?: string;
  results: TorchRow[];
}

export interface OnnxRow {
  model: string;
  provider: string;
  precision: string;
  batch: number;
  images_per_s: number;
  ms_per_batch: number;
  spread_ms: [number, number];
  reps: number;
  tflops: number;
  peak_fraction?: number;
  vs_torch_device?: number;
  vs_torch_host?: number;
}

export interface ProviderEntry {
  model: string;
  requested: string;
  precision: string;
  order: string[];
  used?: string;
  skipped?: Array<{ name: string; reason: string }>;
  session_s?: number;
  parity_min_cosine?: number;
}

export interface Results {
  started: string;
  machine: Record<string, unknown>;
  options: Record<string, unknown>;
  peaks?: { fp16: number; fp32: number; source: string };
  torch?: { device?: string; file: string };
  models: Array<Record<string, unknown>>;
  providers: ProviderEntry[];
  onnx: OnnxRow[];
  e2e: Array<Record<string, unknown>>;
  notes: string[];
  errors: string[];
  seconds?: number;
}

export function summary(res: Results): string {
  const lines: string[] = [];
  lines.push(`GPU bench (${res.machine.gpu}; node ${res.machine.node}, onnxruntime-node ${res.machine.onnxruntimeNode}, ${res.machine.cores} cores, ${res.seconds} s)`);
  if (res.peaks) lines.push(`peaks assumed: fp16 ${res.peaks.fp16}, fp32 ${res.peaks.fp32} TFLOP/s (${res.peaks.source})`);
  for (const p of res.providers) {
    const skipped = p.skipped ?? [];
    lines.push(
      `provider ${p.requested} ${p.precision} -> used ${p.used ?? 'none'}` +
        (skipped.length ? ` (skipped: ${skipped.map((s) => `${s.name}: ${s.reason}`).join('; ')})` : '') +
        (p.session_s !== undefined ? `; session ${p.session_s} s` : '') +
        (p.parity_min_cosine !== undefined ? `; parity min cosine ${p.parity_min_cosine}` : '') +
        `  [${p.model}]`,
    );
  }
  lines.push('ONNX only (median images/s):');
  for (const r of res.onnx) {
    lines.push(
      `  ${r.model} ${r.provider} ${r.precision} b${r.batch}: ${r.images_per_s} img/s, ${r.ms_per_batch} ms/batch, ${r.tflops} TFLOP/s` +
        (r.peak_fraction !== undefined ? `, ${(r.peak_fraction * 100).toFixed(2)}% of peak` : '') +
        (r.vs_torch_device !== undefined ? `, ${r.vs_torch_device}x PyTorch eager` : '') +
        (r.vs_torch_host !== undefined ? ` (${r.vs_torch_host}x with host copies)` : ''),
    );
  }
  if (res.e2e.length) {
    lines.push('end to end from JPEG (images/s):');
    for (const e of res.e2e) lines.push(`  ${String(e.mode)}: ${String(e.images_per_s)} img/s (${String(e.provider)} ${String(e.precision)} b${String(e.batch)}, ${String(e.images)} images)`);
  }
  for (const n of res.notes) lines.push(`note: ${n}`);
  for (const e of res.errors) lines.push(`ERROR: ${e}`);
  return lines.join('\n');
}
