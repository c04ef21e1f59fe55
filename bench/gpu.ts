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
import { isMainThread } from 'node:worker_threads';
import { minRowCosine } from '../extension/engine/vectors';
import { endToEnd } from './gpu-end-to-end';
import type { Sharp } from './gpu-end-to-end';
import { parseOptions } from './gpu-options';
import type { Options } from './gpu-options';
import { firstLine, r1, r2, summary } from './gpu-results';
import type { OnnxRow, ProviderEntry, Results, TorchFile } from './gpu-results';
import { median } from './machine';

// Decoding uses sharp on libuv's pool; it must be as large as the machine before first use.
if (!process.env.UV_THREADPOOL_SIZE) process.env.UV_THREADPOOL_SIZE = String(Math.max(4, os.availableParallelism()));

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

// ---------------------------------------------------------------------------------------------
// Entry (last, so every declaration above is initialised).

if (isMainThread) {
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
