// GPU benchmark (issue 7): image-encoding throughput of exported CLIPN model folders through the
// engine (ClipnModel, so the engine's provider selection and fall-through are what is measured).
//
//   node out/bench/gpu.js --model DIR [--model DIR2] [--providers webgpu,cpu] [--gpu NAME]
//        [--batches 32,64,128,256] [--precisions fp16,fp32] [--cpu-batches 16] [--cpu-precisions fp32]
//        [--e2e 2048] [--e2e-batch 128] [--torch torch.json] [--json gpu.json] [--report gpu.txt]
//
// Per model and requested provider, one ClipnModel with the order [provider, 'cpu'], so a
// provider that cannot start falls through to cpu and the reason is recorded; rows are measured
// only on the provider that was asked for (cpu has its own, smaller, rows).
//   - parity: the model's PyTorch fixture (parity/pixel_values.npy -> image_embeds.npy) through
//     each provider and precision, min cosine;
//   - ONNX only: preallocated random pixels, per batch size warm-up runs then timed runs, the
//     median; images/s, TFLOP/s from the manifest's architecture (35.1 GFLOP for ViT-B/16 at
//     224 px), the fraction of the GPU's peak (dense fp16 tensor / fp32 non-tensor) and the
//     ratio to PyTorch eager on the same batch (from scripts/gpu/torch_bench.py's JSON);
//   - end to end (first model, first provider that ran; needs sharp): N generated 500x375
//     JPEGs, (a) the engine's encodeImages with concurrency = cores, (b) decode + preprocess in
//     worker threads writing into shared batch buffers while the main thread runs the graph
//     (what the engine could do), (c) the same workers without the graph (decode ceiling).
// Every measurement is appended to the JSON at once, so a killed run keeps what it measured.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { minRowCosine } from '../extension/engine/vectors';

// Decoding uses sharp on libuv's pool; it must be as large as the machine before first use.
if (!process.env.UV_THREADPOOL_SIZE) process.env.UV_THREADPOOL_SIZE = String(Math.max(4, os.availableParallelism()));

type Sharp = typeof import('sharp').default;

/** sharp, or undefined where it was not packed (the pack may carry a stub that throws). */
function loadSharp(): Sharp | undefined {
  try {
    const mod: unknown = require('sharp');
    if (typeof mod !== 'function' || (mod as unknown as { __clipnStub?: boolean }).__clipnStub) return undefined;
    return mod as Sharp;
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// Worker side (end-to-end mode b/c): decode + preprocess one image into a shared batch buffer.

interface DecoderData {
  role: 'decoder';
  cfg: import('../extension/engine/preprocess').PreprocessConfig;
  buffers: SharedArrayBuffer[];
}

interface DecodeTask {
  id: number;
  buf: number;
  slot: number;
  file: string;
}

// ---------------------------------------------------------------------------------------------
// Main side.

interface Options {
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

const USAGE = `usage: node out/bench/gpu.js --model DIR [--model DIR] [--providers webgpu,cpu] [--gpu NAME]
  [--batches 32,64,128,256] [--precisions fp16,fp32] [--cpu-batches 16] [--cpu-precisions fp32]
  [--warmup 2] [--reps 5] [--budget-s 20] [--deadline-s 0] [--threads N]
  [--e2e 0|N] [--e2e-batch 128] [--e2e-precision fp16] [--e2e-workers cores-1]
  [--torch torch.json] [--json out.json] [--report out.txt] [--peak-fp16 TFLOPS] [--peak-fp32 TFLOPS]`;

function parseOptions(argv: string[]): Options {
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

/** Dense peak TFLOP/s: [fp16 tensor, fp32 non-tensor], from NVIDIA's datasheets. */
function peaksFor(gpu: string): { fp16: number; fp32: number; source: string } | undefined {
  const g = gpu.toUpperCase();
  if (/H100/.test(g) && /PCIE/.test(g)) return { fp16: 756, fp32: 51, source: 'H100 PCIe datasheet' };
  if (/H100/.test(g) && /NVL/.test(g)) return { fp16: 835, fp32: 60, source: 'H100 NVL datasheet' };
  if (/H100|H200|GH200|H800/.test(g)) return { fp16: 989, fp32: 67, source: 'H100/H200 SXM datasheet' };
  if (/A100/.test(g)) return { fp16: 312, fp32: 19.5, source: 'A100 datasheet' };
  return undefined;
}

/** GFLOP per image of the vision tower from the manifest (matches torch_bench.py's count). */
function vitGflop(arch: { vision: { image_size: number; patch_size: number; width: number; layers: number }; embed_dim: number; mlp_ratio?: number }): number {
  const v = arch.vision;
  const grid = (v.image_size / v.patch_size) ** 2;
  const n = grid + 1;
  const w = v.width;
  const hidden = Math.floor(w * (arch.mlp_ratio ?? 4));
  const perLayer = 2 * n * w * 3 * w + 2 * 2 * n * n * w + 2 * n * w * w + 2 * 2 * n * w * hidden;
  const patch = 2 * grid * 3 * v.patch_size * v.patch_size * w;
  return (v.layers * perLayer + patch + 2 * w * arch.embed_dim) / 1e9;
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

const r1 = (x: number) => Math.round(x * 10) / 10;
const r2 = (x: number) => Math.round(x * 100) / 100;
const firstLine = (e: unknown) => String((e as Error)?.message ?? e).split('\n')[0].slice(0, 400);


interface TorchRow {
  precision: string;
  batch: number;
  mode: string;
  images_per_s: number;
}
interface TorchFile {
  device?: string;
  arch?: string;
  results: TorchRow[];
}

interface OnnxRow {
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

interface ProviderEntry {
  model: string;
  requested: string;
  precision: string;
  order: string[];
  used?: string;
  skipped?: Array<{ name: string; reason: string }>;
  session_s?: number;
  parity_min_cosine?: number;
}

interface Results {
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

async function main(): Promise<number> {
  const o = parseOptions(process.argv.slice(2));
  const t0 = performance.now();
  const elapsed = () => (performance.now() - t0) / 1000;
  const pastDeadline = () => o.deadlineS > 0 && elapsed() > o.deadlineS;
  // Loaded here, not at the top: worker threads load only preprocess.
  const { ClipnModel } = require('../extension/engine/encoder') as typeof import('../extension/engine/encoder');
  const { availableProviders } = require('../extension/engine/backend') as typeof import('../extension/engine/backend');
  const { readNpy } = require('../extension/engine/npy') as typeof import('../extension/engine/npy');
  let ortVersion = 'unknown';
  try {
    ortVersion = (require('onnxruntime-node/package.json') as { version: string }).version;
  } catch {
    // version not readable: keep 'unknown'
  }
  const sharp = loadSharp();
  const peaks = o.peakFp16 !== undefined || o.peakFp32 !== undefined
    ? { fp16: o.peakFp16 ?? 0, fp32: o.peakFp32 ?? 0, source: 'command line' }
    : peaksFor(o.gpu);
  let torch: TorchFile | undefined;
  if (o.torch) {
    try {
      torch = JSON.parse(fs.readFileSync(o.torch, 'utf8')) as TorchFile;
    } catch (err) {
      console.log(`torch figures: cannot read ${o.torch} (${firstLine(err)}); no PyTorch ratios`);
    }
  }
  const res: Results = {
    started: new Date().toISOString(),
    machine: {
      cpu: os.cpus()[0]?.model ?? 'unknown',
      cores: os.availableParallelism(),
      memoryGiB: Math.round(os.totalmem() / 2 ** 30),
      node: process.version,
      onnxruntimeNode: ortVersion,
      providersInBuild: availableProviders(),
      gpu: o.gpu || 'unknown',
      uvThreadpool: process.env.UV_THREADPOOL_SIZE,
      sharp: sharp ? 'yes' : 'not packed',
    },
    options: { ...o },
    peaks,
    torch: torch ? { device: torch.device, file: o.torch! } : undefined,
    models: [],
    providers: [],
    onnx: [],
    e2e: [],
    notes: [],
    errors: [],
  };
  const save = () => {
    res.seconds = r1(elapsed());
    if (o.json) fs.writeFileSync(o.json, JSON.stringify(res, null, 1) + '\n');
  };
  const note = (s: string) => {
    res.notes.push(s);
    console.log(`note: ${s}`);
  };
  const error = (s: string) => {
    res.errors.push(s);
    console.log(`ERROR: ${s}`);
    save();
  };
  console.log(`gpu bench: node ${process.version}, onnxruntime-node ${ortVersion} (providers in this build: ${availableProviders().join(', ')}), ` +
    `${os.cpus()[0]?.model ?? '?'} x ${os.availableParallelism()}, GPU ${o.gpu || 'not given'}, UV_THREADPOOL_SIZE ${process.env.UV_THREADPOOL_SIZE}`);
  console.log(peaks ? `peak assumed: ${peaks.fp16} TFLOP/s fp16 dense tensor, ${peaks.fp32} TFLOP/s fp32 non-tensor (${peaks.source})` : 'peak: unknown GPU, no peak fractions (give --gpu or --peak-fp16/--peak-fp32)');
  if (torch) console.log(`PyTorch eager figures: ${o.torch} (${torch.device ?? '?'}, ${torch.results.length} rows)`);
  save();

  // One shared random batch (values in the normalised pixel range), subarrays per batch size.
  const maxBatch = Math.max(...o.batches, ...o.cpuBatches, o.e2eBatch);
  let e2eDone = false;

  for (const [mi, folder] of o.models.entries()) {
    if (pastDeadline()) {
      note(`deadline ${o.deadlineS} s reached: model ${folder} skipped`);
      break;
    }
    let probe;
    try {
      probe = await ClipnModel.load(folder, { backend: { executionProviders: ['cpu'] } });
    } catch (err) {
      error(`model ${folder}: ${firstLine(err)}`);
      continue;
    }
    const m = probe.manifest;
    const label = `${m.name} (${m.architecture.config ?? '?'})`;
    const gflop = vitGflop(m.architecture);
    const size = probe.imageSize;
    const per = 3 * size * size;
    const hasFp16 = Boolean(probe.modelFolder.graphs.image_fp16);
    await probe.dispose();
    res.models.push({ label, folder, arch: m.architecture.config, image_size: size, gflop_per_image: r2(gflop), fp16_graph: hasFp16 });
    console.log(`\n== model ${label}: ${folder}, ${size} px, ${gflop.toFixed(2)} GFLOP/image${hasFp16 ? '' : ', no fp16 graph'}`);
    const pixels = new Float32Array(maxBatch * per);
    let seed = 1234567 + mi;
    for (let i = 0; i < pixels.length; i++) {
      seed = (Math.imul(seed, 1664525) + 1013904223) | 0;
      pixels[i] = ((seed >>> 8) / 16777216) * 4 - 2;
    }
    let fixture: { pixels: Float32Array; dims: number[]; want: Float32Array } | undefined;
    try {
      const fx = probe.modelFolder.fixture;
      if (fx) {
        const px = readNpy(path.join(fx, 'pixel_values.npy'));
        const want = readNpy(path.join(fx, 'image_embeds.npy'));
        fixture = { pixels: px.data as Float32Array, dims: px.shape, want: want.data as Float32Array };
      }
    } catch (err) {
      note(`${label}: parity fixture unreadable (${firstLine(err)})`);
    }
    // PyTorch rows compare only like with like: same architecture, and GPU rows with a GPU run.
    const torchFor = (precision: string, batch: number, mode: string, onCpu: boolean) =>
      torch && (!torch.arch || torch.arch === m.architecture.config) && onCpu === (torch.device === 'cpu')
        ? torch.results.find((t) => t.precision === precision && t.batch === batch && t.mode === mode)
        : undefined;

    /** provider -> precisions that ran on it (not fallen through). */
    const ranOn = new Map<string, Set<string>>();
    for (const requested of o.providers) {
      if (pastDeadline()) {
        note(`deadline reached: ${label} on ${requested} skipped`);
        break;
      }
      const order = requested === 'cpu' ? ['cpu'] : [requested, 'cpu'];
      const onCpu = requested === 'cpu';
      const precisions = (onCpu ? o.cpuPrecisions : o.precisions).filter((p) => p === 'fp32' || hasFp16);
      const batches = onCpu ? o.cpuBatches : o.batches;
      // One ClipnModel per precision: the backend remembers a provider that failed on one graph
      // and skips it for every later graph, so an fp16-only failure must not hide fp32 rows.
      for (const precision of precisions) {
        const model = await ClipnModel.load(folder, { backend: { executionProviders: order, intraOpNumThreads: o.threads } });
        const entry: ProviderEntry = { model: label, requested, precision, order };
        res.providers.push(entry);
        try {
          const graph = precision === 'fp16' ? 'image_fp16' : 'image';
          const ts = performance.now();
          let report;
          try {
            report = await model.providerReport(graph);
          } catch (err) {
            error(`${label} ${requested} ${precision}: session failed: ${firstLine(err)}`);
            continue;
          }
          entry.session_s = r2((performance.now() - ts) / 1000);
          entry.used = report.used;
          entry.skipped = report.skipped;
          const skippedText = report.skipped.map((s) => `${s.name}: ${s.reason}`).join('; ');
          console.log(`-- ${requested} ${precision}: provider used ${report.used}${skippedText ? ` (skipped ${skippedText})` : ''}, session ${entry.session_s.toFixed(1)} s`);
          if (report.used !== requested) {
            note(`${label} ${precision}: ${requested} fell through to ${report.used}; its rows and parity are not measured (cpu has its own rows) (${skippedText})`);
            continue;
          }
          if (fixture) {
            try {
              const got = await model.encodePixels(fixture.pixels, fixture.dims, precision);
              const c = minRowCosine(got.data, fixture.want, model.embedDim);
              entry.parity_min_cosine = Math.round(c * 1e6) / 1e6;
              const want = precision === 'fp16' ? 0.999 : 0.9999;
              console.log(`   parity vs PyTorch fixture: min cosine ${c.toFixed(6)} ${c >= want ? 'ok' : `BELOW ${want}`}`);
              if (c < want) res.errors.push(`${label} ${report.used} ${precision}: parity min cosine ${c.toFixed(6)} < ${want}`);
            } catch (err) {
              error(`${label} ${report.used} ${precision}: parity run failed: ${firstLine(err)}`);
            }
          }
          if (!ranOn.has(requested)) ranOn.set(requested, new Set());
          ranOn.get(requested)!.add(precision);
          for (const batch of batches) {
            if (pastDeadline()) {
              note(`deadline reached: ${label} ${requested} ${precision} b${batch} and later rows skipped`);
              break;
            }
            const dims = [batch, 3, size, size];
            const x = pixels.subarray(0, batch * per);
            try {
              const tw = performance.now();
              for (let w = 0; w < o.warmup; w++) await model.encodePixels(x, dims, precision);
              const warmS = (performance.now() - tw) / 1000;
              const times: number[] = [];
              const tr = performance.now();
              while (times.length < o.reps) {
                const t = performance.now();
                await model.encodePixels(x, dims, precision);
                times.push((performance.now() - t) / 1000);
                if (times.length >= 2 && (performance.now() - tr) / 1000 > o.budgetS) break;
              }
              const med = median(times);
              const ips = batch / med;
              const tflops = (ips * gflop) / 1000;
              const row: OnnxRow = {
                model: label, provider: requested, precision, batch,
                images_per_s: r1(ips), ms_per_batch: r2(med * 1000),
                spread_ms: [r2(Math.min(...times) * 1000), r2(Math.max(...times) * 1000)], reps: times.length, tflops: r2(tflops),
              };
              const peak = peaks ? (precision === 'fp16' ? peaks.fp16 : peaks.fp32) : 0;
              if (!onCpu && peak > 0) row.peak_fraction = Math.round((tflops / peak) * 1e4) / 1e4;
              const td = torchFor(precision, batch, 'device', onCpu);
              const th = torchFor(precision, batch, 'host', onCpu);
              if (td) row.vs_torch_device = r2(ips / td.images_per_s);
              if (th) row.vs_torch_host = r2(ips / th.images_per_s);
              res.onnx.push(row);
              console.log(
                `   ${precision} b${String(batch).padEnd(4)} ${ips.toFixed(1).padStart(9)} img/s  ${(med * 1000).toFixed(2).padStart(8)} ms/batch ` +
                  `(min ${row.spread_ms[0]}, max ${row.spread_ms[1]}, n ${times.length}, warm-up ${warmS.toFixed(1)} s)  ${tflops.toFixed(2)} TFLOP/s` +
                  (row.peak_fraction !== undefined ? `  ${(row.peak_fraction * 100).toFixed(2)}% of ${peak} peak` : '') +
                  (td ? `  ${row.vs_torch_device}x PyTorch eager (${td.images_per_s} img/s)` : '') +
                  (th ? `  ${row.vs_torch_host}x PyTorch with host copies` : ''),
              );
              save();
            } catch (err) {
              error(`${label} ${requested} ${precision} b${batch}: ${firstLine(err)}`);
            }
          }
        } finally {
          await model.dispose();
        }
        save();
      }
    }

    // End to end on the first model, with the first GPU provider that ran (else the first that ran).
    if (o.e2e > 0 && !e2eDone) {
      e2eDone = true;
      const provider = [...ranOn.keys()].find((p) => p !== 'cpu') ?? (ranOn.has('cpu') ? 'cpu' : undefined);
      if (!sharp) note('end to end skipped: sharp is not packed');
      else if (!provider) note('end to end skipped: no provider ran');
      else if (pastDeadline()) note('end to end skipped: deadline reached');
      else {
        // fp16 graphs are very slow on onnxruntime's CPU provider; the CPU fallback stays small.
        const onCpu = provider === 'cpu';
        const ran = provider ? ranOn.get(provider)! : new Set<string>();
        const precision = onCpu ? 'fp32' : ran.has(o.e2ePrecision) ? o.e2ePrecision : ran.has('fp16') ? 'fp16' : 'fp32';
        const eo = onCpu ? { ...o, e2e: Math.min(o.e2e, 256), e2eBatch: Math.min(o.e2eBatch, 32) } : o;
        if (onCpu) note(`end to end on cpu (no GPU provider ran): fp32, ${eo.e2e} images, batch ${eo.e2eBatch}`);
        try {
          await endToEnd(eo, folder, label, provider, precision, sharp, res, save, note, error, deadlineLeft(o, elapsed));
        } catch (err) {
          error(`end to end: ${firstLine(err)}`);
        }
      }
    }
  }
  res.seconds = r1(elapsed());
  save();
  const text = summary(res);
  console.log('\n' + text);
  if (o.report) fs.writeFileSync(o.report, text + '\n');
  return res.onnx.length > 0 ? 0 : 1;
}

function deadlineLeft(o: Options, elapsed: () => number): () => number {
  return () => (o.deadlineS > 0 ? o.deadlineS - elapsed() : Infinity);
}

/** n JPEGs of 500x375 (smooth colour fields + noise + a shape), written with all cores. */
async function writeJpegs(sharp: Sharp, dir: string, n: number): Promise<string[]> {
  fs.mkdirSync(dir, { recursive: true });
  const w = 500;
  const h = 375;
  const files = Array.from({ length: n }, (_, i) => path.join(dir, `img_${String(i).padStart(5, '0')}.jpg`));
  let next = 0;
  const worker = async () => {
    const px = Buffer.alloc(w * h * 3);
    while (next < n) {
      const i = next++;
      let s = (i + 1) * 2654435761;
      const cx = 100 + ((i * 37) % 300);
      const cy = 80 + ((i * 53) % 220);
      const rad = 40 + ((i * 17) % 60);
      for (let y = 0; y < h; y++) {
        for (let x = 0; x < w; x++) {
          s = (Math.imul(s, 1103515245) + 12345) | 0;
          const noise = ((s >>> 24) & 31) - 16;
          const inside = (x - cx) ** 2 + (y - cy) ** 2 < rad * rad;
          const k = (y * w + x) * 3;
          px[k] = Math.max(0, Math.min(255, (inside ? 230 : (x * 255) / w) + noise));
          px[k + 1] = Math.max(0, Math.min(255, (inside ? 40 : (y * 255) / h) + noise));
          px[k + 2] = Math.max(0, Math.min(255, (inside ? 60 : ((i * 29) % 256)) + noise));
        }
      }
      await sharp(px, { raw: { width: w, height: h, channels: 3 } }).jpeg({ quality: 90 }).toFile(files[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, os.availableParallelism()) }, worker));
  return files;
}

/** A pool of decoder workers filling two shared batch buffers. */
class DecoderPool {
  private readonly workers: Worker[];
  private readonly pending = new Map<number, { resolve: () => void; fail: (r: string) => void }>();
  private nextId = 0;
  private rr = 0;
  readonly views: Float32Array[];

  constructor(count: number, cfg: unknown, batch: number, per: number) {
    const buffers = [0, 1].map(() => new SharedArrayBuffer(batch * per * 4));
    this.views = buffers.map((b) => new Float32Array(b));
    this.workers = Array.from({ length: count }, () => {
      const w = new Worker(__filename, { workerData: { role: 'decoder', cfg, buffers } });
      w.on('message', (m: { id: number; ok: boolean; reason?: string }) => {
        const p = this.pending.get(m.id);
        this.pending.delete(m.id);
        if (!p) return;
        if (m.ok) p.resolve();
        else p.fail(m.reason ?? 'failed');
      });
      w.on('error', (err) => {
        for (const p of this.pending.values()) p.fail(`decoder worker died: ${firstLine(err)}`);
        this.pending.clear();
      });
      return w;
    });
  }

  /** Decodes files into buffer `buf`, slot i = files[i]; resolves to the failures. */
  fill(buf: number, files: string[]): Promise<string[]> {
    const failures: string[] = [];
    return Promise.all(
      files.map(
        (file, slot) =>
          new Promise<void>((resolve) => {
            const id = this.nextId++;
            this.pending.set(id, { resolve, fail: (r) => (failures.push(`${file}: ${r}`), resolve()) });
            this.workers[this.rr++ % this.workers.length].postMessage({ id, buf, slot, file } satisfies DecodeTask);
          }),
      ),
    ).then(() => failures);
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}

async function endToEnd(
  o: Options,
  folder: string,
  label: string,
  provider: string,
  precision: 'fp32' | 'fp16',
  sharp: Sharp,
  res: Results,
  save: () => void,
  note: (s: string) => void,
  error: (s: string) => void,
  left: () => number,
): Promise<void> {
  const { ClipnModel } = require('../extension/engine/encoder') as typeof import('../extension/engine/encoder');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clipn-gpu-jpegs-'));
  try {
    const tg = performance.now();
    const files = await writeJpegs(sharp, dir, o.e2e);
    const genS = (performance.now() - tg) / 1000;
    const bytes = files.reduce((a, f) => a + fs.statSync(f).size, 0);
    console.log(`\n== end to end: ${label}, ${provider} ${precision}, ${files.length} JPEGs 500x375 (${(bytes / files.length / 1024).toFixed(0)} KiB each, written in ${genS.toFixed(1)} s, in the page cache)`);
    sharp.concurrency(1); // many images in flight: one libvips thread each
    const model = await ClipnModel.load(folder, { backend: { executionProviders: provider === 'cpu' ? ['cpu'] : [provider, 'cpu'], intraOpNumThreads: o.threads } });
    try {
      const size = model.imageSize;
      const per = 3 * size * size;
      const batch = o.e2eBatch;
      const report = await model.providerReport(precision === 'fp16' ? 'image_fp16' : 'image');
      if (report.used !== provider) {
        note(`end to end skipped: ${provider} fell through to ${report.used} this time`);
        return;
      }
      // Warm the graph at this batch size so shader/kernel compilation is not timed.
      const warm = new Float32Array(batch * per);
      await model.encodePixels(warm, [batch, 3, size, size], precision);
      const cores = os.availableParallelism();
      const record = (mode: string, seconds: number, extra: Record<string, unknown> = {}) => {
        const row = { model: label, provider: report.used, precision, mode, images: files.length, batch, images_per_s: r1(files.length / seconds), seconds: r2(seconds), ...extra };
        res.e2e.push(row);
        console.log(`   ${mode.padEnd(12)} ${row.images_per_s.toFixed(1).padStart(8)} img/s  (${seconds.toFixed(2)} s${Object.keys(extra).length ? `, ${JSON.stringify(extra)}` : ''})`);
        save();
      };

      // (a) the engine as the extension calls it.
      if (left() > 20) {
        const ta = performance.now();
        const cpu0 = process.cpuUsage();
        const out = await model.encodeImages(files, { batchSize: batch, concurrency: cores, precision });
        const cpu = process.cpuUsage(cpu0);
        const s = (performance.now() - ta) / 1000;
        record('engine', s, { concurrency: cores, failures: out.failures.length, process_cpu_s: r1((cpu.user + cpu.system) / 1e6) });
      } else note('end to end (engine) skipped: deadline');

      // (b) decode in worker threads, graph on the main thread, double-buffered.
      const workers = Math.min(o.e2eWorkers, cores);
      const pool = new DecoderPool(workers, model.manifest.preprocess, batch, per);
      try {
        const chunks: string[][] = [];
        for (let i = 0; i < files.length; i += batch) chunks.push(files.slice(i, i + batch));
        let copied = false;
        const host = new Float32Array(batch * per);
        const runBatch = async (view: Float32Array, rows: number) => {
          const x = view.subarray(0, rows * per);
          if (!copied) {
            try {
              return await model.encodePixels(x, [rows, 3, size, size], precision);
            } catch (err) {
              copied = true;
              note(`shared-memory input refused by onnxruntime-node (${firstLine(err)}): copying each batch`);
            }
          }
          host.set(x);
          return model.encodePixels(host.subarray(0, rows * per), [rows, 3, size, size], precision);
        };
        // Warm the workers (module load, sharp init) outside the timing.
        await pool.fill(0, files.slice(0, Math.min(files.length, workers * 2)));
        for (const graphToo of [true, false]) {
          if (left() < 15) {
            note(`end to end (${graphToo ? 'workers' : 'decode-only'}) skipped: deadline`);
            continue;
          }
          const tb = performance.now();
          let failures = 0;
          let runS = 0;
          let pending = pool.fill(0, chunks[0]);
          for (let k = 0; k < chunks.length; k++) {
            failures += (await pending).length;
            pending = k + 1 < chunks.length ? pool.fill((k + 1) % 2, chunks[k + 1]) : Promise.resolve([]);
            if (graphToo) {
              const tr = performance.now();
              await runBatch(pool.views[k % 2], chunks[k].length);
              runS += (performance.now() - tr) / 1000;
            }
          }
          await pending;
          const s = (performance.now() - tb) / 1000;
          record(graphToo ? 'workers' : 'decode-only', s, { workers, failures, ...(graphToo ? { graph_s: r2(runS), copied_input: copied } : {}) });
        }
      } finally {
        await pool.close();
      }
    } finally {
      await model.dispose();
    }
  } catch (err) {
    error(`end to end: ${firstLine(err)}`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function summary(res: Results): string {
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

// ---------------------------------------------------------------------------------------------
// Entry: a decoder worker, or the benchmark (last, so every declaration above is initialised).

if (!isMainThread && (workerData as DecoderData | undefined)?.role === 'decoder') {
  const data = workerData as DecoderData;
  const { preprocessInto } = require('../extension/engine/preprocess') as typeof import('../extension/engine/preprocess');
  const views = data.buffers.map((b) => new Float32Array(b));
  const per = 3 * data.cfg.size * data.cfg.size;
  parentPort!.on('message', (task: DecodeTask) => {
    preprocessInto(task.file, data.cfg, views[task.buf], task.slot * per, task.file).then(
      () => parentPort!.postMessage({ id: task.id, ok: true }),
      (err: unknown) => parentPort!.postMessage({ id: task.id, ok: false, reason: String((err as Error)?.message ?? err) }),
    );
  });
} else if (isMainThread) {
  main().then(
    (code) => {
      process.exitCode = code;
    },
    (err) => {
      console.error(`gpu bench: ${(err as Error)?.stack ?? err}`);
      process.exitCode = 1;
    },
  );
}
