// Image-encoding throughput: the engine (JPEG decode + preprocess + ONNX on onnxruntime-node,
// fp32 and int8) against PyTorch eager fp32, on a ViT-B/16-sized CLIPN with random weights.
// Goals (issue "engine", item 6/10): engine fp32 >= 1.5x PyTorch fp32; int8 >= 3x PyTorch fp32
// with cosine >= 0.99 to the fp32 features.
//
//   node out/bench/encode-vs-torch.js [--batch 8] [--batches 2] [--rounds 2] [--long]
//                                     [--cache DIR] [--reexport] [--coretype NAME]
//
// Setup (first run, ~1-2 min, cached in DIR = $TMPDIR/clipn-bench-vitb16): Python builds
// CLIPN(get_config('ViT-B-16')) with random weights (seed 0; a small learned vocabulary, the
// image tower is unaffected), exports it with export_model(..., int8=True) and saves the
// state dict for the PyTorch side. JPEGs (224 x 224, quality 90, smooth colours + noise) are
// generated in memory at bench time.
//
// Fairness: PyTorch runs in its own process with OPENBLAS_CORETYPE set for the CPU (SkylakeX where
// it has AVX-512, as shared/notes/benchmarks.md prescribes: Debian's OpenBLAS otherwise falls back
// to SSE3 kernels there; Haswell on AVX2-only CPUs such as this AMD EPYC, where SkylakeX dies with
// Illegal instruction; --coretype NAME overrides), OMP_WAIT_POLICY=PASSIVE and
// torch.set_num_threads(2), in inference mode, timed on ready tensors (no JPEG decoding, which
// favours PyTorch). The engine uses onnxruntime's CPU provider, graph optimisation 'all',
// intra-op threads = os.availableParallelism(), and is timed end to end from JPEG bytes.
// Engine fp32, engine int8 and PyTorch take turns each round (order rotated); medians of the
// per-round images/s are reported. The PyTorch worker blocks on stdin (no CPU) while the
// engine runs.
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as readline from 'node:readline';
import sharp from 'sharp';
import { ClipnModel } from '../extension/engine/encoder';
import { runImagePipeline } from '../extension/engine/encoder-pipeline';
import type { ImageItem } from '../extension/engine/encoder-pipeline';
import { readNpy, writeNpy } from '../extension/engine/npy';
import { preprocessImage } from '../extension/engine/preprocess';
import { args, median, openblasCoreType, printMachine, spread } from './machine';
import { rowCosines } from '../extension/engine/vectors';

const REPO_ROOT = path.resolve(__dirname, '..', '..');
const PYTHON = process.env.CLIPN_PYTHON ?? '/usr/bin/python3';
const CACHE_VERSION = 'vitb16-random-seed0-int8-v2-cls-last-block';
const TORCH_ENV = { OPENBLAS_CORETYPE: openblasCoreType(args().get('coretype')), OMP_WAIT_POLICY: 'PASSIVE' };

const EXPORT_PY = `
import json, sys, time
from pathlib import Path
import torch
from clipn.config import get_config
from clipn.model import CLIPN
from clipn.recipe import caption_corpus
from clipn.vocab import learn_merges, write_merges
from clipn.tokenizer import ClipTokenizer
from clipn.export import export_model

work = Path(sys.argv[1])
merges = work / "merges.txt"
write_merges(merges, learn_merges(caption_corpus()))
torch.manual_seed(0)
config = get_config("ViT-B-16").with_vocab(ClipTokenizer(merges).vocab_size)
model = CLIPN(config)
t = time.time()
export_model(model, merges, work / "model", "vitb16-random", int8=True)
torch.save(model.state_dict(), work / "model.pt")
print(json.dumps({"export_seconds": time.time() - t, "vocab": config.text.vocab_size}))
`;

const TORCH_WORKER_PY = `
import json, os, sys, time
from pathlib import Path
import numpy as np
import torch
from clipn.config import get_config
from clipn.model import CLIPN

torch.set_num_threads(2)
work = Path(sys.argv[1])
state = torch.load(work / "model.pt", map_location="cpu")
vocab = state["token_embedding.weight"].shape[0]
model = CLIPN(get_config("ViT-B-16").with_vocab(vocab))
model.load_state_dict(state)
model.eval()
info = {
    "torch": torch.__version__, "threads": torch.get_num_threads(),
    "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"), "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
}
print(json.dumps({"ready": info}), flush=True)
gen = torch.Generator().manual_seed(1)
for line in sys.stdin:
    cmd = json.loads(line)
    with torch.inference_mode():
        if cmd["op"] == "time":
            b = cmd["batch"]
            x = torch.randn(b, 3, 224, 224, generator=gen)
            if cmd.get("warmup"):
                model.encode_image(x)
            times, cpu = [], []
            for _ in range(cmd["batches"]):
                t, c = time.perf_counter(), time.process_time()
                model.encode_image(x)
                times.append(time.perf_counter() - t)
                cpu.append(time.process_time() - c)
            print(json.dumps({"times": times, "cpu": cpu}), flush=True)
        elif cmd["op"] == "encode":
            x = torch.from_numpy(np.load(cmd["pixels"]))
            np.save(cmd["out"], model.encode_image(x).numpy())
            print(json.dumps({"done": True}), flush=True)
`;

interface TorchWorker {
  proc: ChildProcessWithoutNullStreams;
  ask(cmd: object): Promise<Record<string, unknown>>;
  info: Record<string, unknown>;
}

async function startTorch(work: string): Promise<TorchWorker> {
  const proc = spawn(PYTHON, ['-c', TORCH_WORKER_PY, work], {
    env: { ...process.env, ...TORCH_ENV, PYTHONPATH: path.join(REPO_ROOT, 'models'), PYTHONWARNINGS: 'ignore' },
  });
  let stderr = '';
  proc.stderr.on('data', (b) => (stderr += String(b)));
  const lines = readline.createInterface({ input: proc.stdout });
  const queue: Array<(v: Record<string, unknown>) => void> = [];
  const failed = new Promise<never>((_, reject) => proc.on('exit', (code) => reject(new Error(`PyTorch worker exited (${code}): ${stderr.slice(-2000)}`))));
  failed.catch(() => undefined);
  lines.on('line', (l) => queue.shift()?.(JSON.parse(l) as Record<string, unknown>));
  const next = () => Promise.race([new Promise<Record<string, unknown>>((resolve) => queue.push(resolve)), failed]);
  const ready = await next();
  return {
    proc,
    info: ready.ready as Record<string, unknown>,
    ask: (cmd) => {
      const p = next();
      proc.stdin.write(JSON.stringify(cmd) + '\n');
      return p;
    },
  };
}

function ensureModel(work: string, reexport: boolean): void {
  const marker = path.join(work, 'VERSION');
  const ok = fs.existsSync(path.join(work, 'model', 'clipn.json')) && fs.existsSync(path.join(work, 'model.pt')) &&
    fs.existsSync(marker) && fs.readFileSync(marker, 'utf8') === CACHE_VERSION;
  if (ok && !reexport) {
    console.log(`model: cached ViT-B/16 random-weight export in ${work}`);
    return;
  }
  fs.rmSync(work, { recursive: true, force: true });
  fs.mkdirSync(work, { recursive: true });
  console.log(`model: exporting a random-weight ViT-B/16 CLIPN (fp32 + int8) to ${work} (1-2 minutes) ...`);
  const r = spawnSync(PYTHON, ['-c', EXPORT_PY, work], {
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
    env: { ...process.env, PYTHONPATH: path.join(REPO_ROOT, 'models'), PYTHONWARNINGS: 'ignore' },
  });
  if (r.status !== 0) throw new Error(`export failed (exit ${r.status}): ${r.stderr.slice(-3000)}`);
  const lines = r.stdout.trim().split('\n');
  console.log(`model: exported in ${(JSON.parse(lines[lines.length - 1]) as { export_seconds: number }).export_seconds.toFixed(0)} s`);
  fs.writeFileSync(marker, CACHE_VERSION);
}

/** n 224 x 224 JPEGs: smooth colour fields plus noise, so decoding does real work. */
async function makeJpegs(n: number, size = 224): Promise<Buffer[]> {
  let seed = 2024;
  const rand = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  const out: Buffer[] = [];
  for (let i = 0; i < n; i++) {
    const px = Buffer.alloc(size * size * 3);
    const f = [1 + rand() * 6, 1 + rand() * 6, 1 + rand() * 6];
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        for (let c = 0; c < 3; c++) {
          const v = 128 + 90 * Math.sin((x * f[c] + y * f[(c + 1) % 3]) / size * Math.PI) + (rand() - 0.5) * 60;
          px[(y * size + x) * 3 + c] = Math.max(0, Math.min(255, Math.round(v)));
        }
      }
    }
    out.push(await sharp(px, { raw: { width: size, height: size, channels: 3 } }).jpeg({ quality: 90 }).toBuffer());
  }
  return out;
}


async function main(): Promise<void> {
  const a = args();
  const long = a.get('long') === 'true';
  const batch = Number(a.get('batch') ?? 8);
  const batches = Number(a.get('batches') ?? (long ? 5 : 2));
  const rounds = Number(a.get('rounds') ?? (long ? 3 : 2));
  const work = path.resolve(a.get('cache') ?? path.join(os.tmpdir(), 'clipn-bench-vitb16'));
  if (work.startsWith(REPO_ROOT + path.sep)) throw new Error(`--cache must be outside the repository (${REPO_ROOT})`);
  const machine = printMachine();
  ensureModel(work, a.get('reexport') === 'true');
  const folder = path.join(work, 'model');
  const n = batch * batches;
  console.log(`images: ${n} JPEGs 224 x 224 per engine run (${batches} batches of ${batch}); ${rounds} rounds`);
  const jpegs = await makeJpegs(n);

  const model = await ClipnModel.load(folder, { verify: 'none', backend: { executionProviders: ['cpu'] } });
  const int8File = model.modelFolder.graphs.image_int8;
  if (!int8File) throw new Error(`${folder}: no image_int8 graph; rerun with --reexport`);
  const int8Session = await model.backend.session('image_int8', int8File);
  const cfg = model.manifest.preprocess;
  const dim = model.embedDim;
  const items: ImageItem[] = jpegs.map((data, index) => ({ input: data, name: `jpeg ${index}`, index }));
  const encodeInt8 = () =>
    runImagePipeline(items, cfg, dim, async (pixels, rows) =>
      (await int8Session.run({ pixel_values: { type: 'float32', data: pixels, dims: [rows, 3, cfg.size, cfg.size] } })).data,
    { batchSize: batch, concurrency: 2 });
  const encodeFp32 = () => model.encodeImages(jpegs, { batchSize: batch });

  // Warm-up: session creation and first runs, untimed.
  await model.encodeImages(jpegs.slice(0, batch), { batchSize: batch });
  await runImagePipeline(items.slice(0, batch), cfg, dim, async (pixels, rows) =>
    (await int8Session.run({ pixel_values: { type: 'float32', data: pixels, dims: [rows, 3, cfg.size, cfg.size] } })).data,
  { batchSize: batch, concurrency: 2 });
  const torch = await startTorch(work);
  console.log(`PyTorch worker: ${JSON.stringify(torch.info)}`);
  await torch.ask({ op: 'time', batch, batches: 1, warmup: true });

  // Same model on both sides: PyTorch on the engine's preprocessed pixels of the first batch.
  const pixels = new Float32Array(batch * 3 * cfg.size * cfg.size);
  for (let i = 0; i < batch; i++) pixels.set(await preprocessImage(jpegs[i], cfg), i * 3 * cfg.size * cfg.size);
  const pxFile = path.join(work, 'bench_pixels.npy');
  const outFile = path.join(work, 'bench_torch_embeds.npy');
  writeNpy(pxFile, { dtype: '<f4', shape: [batch, 3, cfg.size, cfg.size], data: pixels });
  await torch.ask({ op: 'encode', pixels: pxFile, out: outFile });
  const torchEmb = readNpy(outFile).data as Float32Array;
  const ortEmb = (await model.encodePixels(pixels, [batch, 3, cfg.size, cfg.size])).data;
  const parity = Math.min(...rowCosines(torchEmb, ortEmb, dim));
  console.log(`parity: engine fp32 vs PyTorch fp32 on the same pixels, min cosine ${parity.toFixed(6)}`);

  const rate = { fp32: [] as number[], int8: [] as number[], torch: [] as number[] };
  // Images per CPU-second (all threads of the process: ORT's pool and libuv's decoders, or
  // PyTorch's OpenMP threads): steadier than wall time when other jobs share the cores.
  const perCpu = { fp32: [] as number[], int8: [] as number[], torch: [] as number[] };
  const cosines: number[] = [];
  const steps = ['fp32', 'int8', 'torch'] as const;
  for (let r = 0; r < rounds; r++) {
    let fp32Out: Float32Array | undefined;
    let int8Out: Float32Array | undefined;
    for (let k = 0; k < steps.length; k++) {
      const step = steps[(k + r) % steps.length];
      if (step === 'torch') {
        const res = await torch.ask({ op: 'time', batch, batches });
        const secs = (res.times as number[]).reduce((x, y) => x + y, 0);
        rate.torch.push(n / secs);
        perCpu.torch.push(n / (res.cpu as number[]).reduce((x, y) => x + y, 0));
      } else {
        const t0 = performance.now();
        const c0 = process.cpuUsage();
        const out = step === 'fp32' ? (await encodeFp32()).data : (await encodeInt8()).data;
        rate[step].push(n / ((performance.now() - t0) / 1000));
        const cu = process.cpuUsage(c0);
        perCpu[step].push(n / ((cu.user + cu.system) / 1e6));
        if (step === 'fp32') fp32Out = out;
        else int8Out = out;
      }
    }
    cosines.push(...rowCosines(fp32Out!, int8Out!, dim));
    console.log(`round ${r + 1}/${rounds}: images/s fp32 ${rate.fp32[r].toFixed(2)}, int8 ${rate.int8[r].toFixed(2)}, PyTorch ${rate.torch[r].toFixed(2)}; ` +
      `per CPU-s ${perCpu.fp32[r].toFixed(2)} / ${perCpu.int8[r].toFixed(2)} / ${perCpu.torch[r].toFixed(2)} (load ${os.loadavg()[0].toFixed(2)})`);
  }
  torch.proc.stdin.end();
  await model.dispose();
  fs.rmSync(pxFile, { force: true });
  fs.rmSync(outFile, { force: true });

  const fp32 = median(rate.fp32);
  const int8 = median(rate.int8);
  const pt = median(rate.torch);
  const minCos = Math.min(...cosines);
  const meanCos = cosines.reduce((x, y) => x + y, 0) / cosines.length;
  console.log('');
  console.log(`settings: PyTorch ${torch.info.torch} eager fp32, ${torch.info.threads} threads, OPENBLAS_CORETYPE=${TORCH_ENV.OPENBLAS_CORETYPE}, ` +
    `OMP_WAIT_POLICY=${TORCH_ENV.OMP_WAIT_POLICY}, timed on ready tensors; engine: onnxruntime-node CPU, intra-op ${os.availableParallelism()}, ` +
    `timed from JPEG bytes (decode + resize + crop + normalise + ONNX), batch ${batch}`);
  console.log(`engine fp32: ${fp32.toFixed(2)} images/s (${spread(rate.fp32)})`);
  console.log(`engine int8: ${int8.toFixed(2)} images/s (${spread(rate.int8)})`);
  console.log(`PyTorch fp32: ${pt.toFixed(2)} images/s (${spread(rate.torch)})`);
  console.log(`ratio engine fp32 / PyTorch fp32: ${(fp32 / pt).toFixed(2)}x (goal >= 1.5x: ${fp32 / pt >= 1.5 ? 'MET' : 'NOT MET'})`);
  console.log(`ratio engine int8 / PyTorch fp32: ${(int8 / pt).toFixed(2)}x (goal >= 3x: ${int8 / pt >= 3 ? 'MET' : 'NOT MET'})`);
  console.log(`ratio engine int8 / engine fp32: ${(int8 / fp32).toFixed(2)}x`);
  const cf = median(perCpu.fp32);
  const ci = median(perCpu.int8);
  const ct = median(perCpu.torch);
  console.log(`per CPU-second (all threads; steadier under load): engine fp32 ${cf.toFixed(2)}, int8 ${ci.toFixed(2)}, PyTorch ${ct.toFixed(2)} images; ` +
    `ratios fp32/PyTorch ${(cf / ct).toFixed(2)}x, int8/PyTorch ${(ci / ct).toFixed(2)}x, int8/fp32 ${(ci / cf).toFixed(2)}x`);
  console.log(`int8 vs fp32 features on the same JPEGs: cosine min ${minCos.toFixed(5)}, mean ${meanCos.toFixed(5)} over ${cosines.length} images ` +
    `(goal >= 0.99: ${minCos >= 0.99 ? 'MET' : 'NOT MET'})`);
  if (machine.loadAverage[0] > machine.logicalCpus) console.log('note: the machine was busy when the run started; throughputs are noisy and pessimistic');
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
