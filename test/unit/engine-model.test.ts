// ClipnModel end to end on a micro model exported by the real Python exporter: ONNX-vs-PyTorch
// parity (fixture and whole images), tokenizer agreement, batching, progress, cancellation,
// execution-provider fall-through, and the error messages users see for broken inputs.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { CUDA_PROVIDER_FILES, onnxruntimeNode } from '../../extension/engine/cuda-provider';
import { ClipnModel, imageBatchFor, promptWeights } from '../../extension/engine/encoder';
import { loadManifest, ManifestError } from '../../extension/engine/manifest';
import { readNpy } from '../../extension/engine/npy';
import { copyModelFolder, DEFAULT_MODEL_DIR, defaultModelPresent, exportMicro } from './helpers/models';
import { runPythonJson } from './helpers/python';
import { rowCosines } from '../../extension/engine/vectors';
import { maxAbsDiff } from './helpers/arrays';


/** Writes n small random PNGs (seeded) of varied sizes. */
async function writeImages(dir: string, n: number, prefix = 'img'): Promise<string[]> {
  fs.mkdirSync(dir, { recursive: true });
  let seed = 12345;
  const rand = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  const files: string[] = [];
  for (let i = 0; i < n; i++) {
    const w = 12 + ((i * 7) % 29);
    const h = 12 + ((i * 11) % 23);
    const px = Buffer.alloc(w * h * 3);
    for (let k = 0; k < px.length; k++) px[k] = Math.floor(rand() * 256);
    const file = path.join(dir, `${prefix}_${i}.png`);
    await sharp(px, { raw: { width: w, height: h, channels: 3 } }).png().toFile(file);
    files.push(file);
  }
  return files;
}

describe('ClipnModel on the exported micro model', () => {
  let folder = '';
  let checkpoint = '';
  let work = '';
  let model: ClipnModel;
  let images: string[] = [];

  before(async () => {
    ({ folder, checkpoint, workDir: work } = exportMicro());
    model = await ClipnModel.load(folder, { backend: { executionProviders: ['cpu'] } });
    images = await writeImages(path.join(work, 'images'), 7);
  });

  after(async () => {
    await model?.dispose();
  });

  const fixture = (name: string) => readNpy(path.join(folder, 'parity', `${name}.npy`));

  test('image encoder matches PyTorch on the parity fixture (cosine >= 0.9999), fp16 >= 0.999', async () => {
    const pixels = fixture('pixel_values');
    const want = fixture('image_embeds').data as Float32Array;
    const got = await model.encodePixels(pixels.data as Float32Array, pixels.shape);
    assert.deepEqual(got.dims, [pixels.shape[0], model.embedDim]);
    assert.equal(got.provider, 'cpu');
    for (const c of rowCosines(got.data, want, model.embedDim)) assert.ok(c >= 0.9999, `cosine ${c}`);
    const half = await model.encodePixels(pixels.data as Float32Array, pixels.shape, 'fp16');
    for (const c of rowCosines(half.data, want, model.embedDim)) assert.ok(c >= 0.999, `fp16 cosine ${c}`);
  });

  test('text and text_no encoders match PyTorch for every fixture weight row', async () => {
    const ids = fixture('input_ids');
    const weights = fixture('prompt_weights');
    const yes = await model.encodeTokenIds(ids.data as BigInt64Array, ids.shape);
    for (const c of rowCosines(yes.data, fixture('text_embeds').data as Float32Array, model.embedDim)) {
      assert.ok(c >= 0.9999, `text cosine ${c}`);
    }
    const no = await model.encodeTokenIdsNo(ids.data as BigInt64Array, ids.shape, weights.data as Float32Array, weights.shape);
    const cos = rowCosines(no.data, fixture('text_no_embeds').data as Float32Array, model.embedDim);
    assert.equal(cos.length, weights.shape[0]);
    for (const c of cos) assert.ok(c >= 0.9999, `text_no cosine ${c}`);
  });

  test('fixture tokens.json ids equal our tokenizer, and encodeTexts reproduces text_embeds', async () => {
    const tokens = JSON.parse(fs.readFileSync(path.join(folder, 'parity', 'tokens.json'), 'utf8')) as Array<{ text: string; ids: number[] }>;
    assert.ok(tokens.length > 0);
    for (const t of tokens) assert.deepEqual(model.tokenizer.tokenizeOne(t.text), t.ids, `ids of ${JSON.stringify(t.text)}`);
    const ids = fixture('input_ids').data as BigInt64Array;
    assert.deepEqual([...model.tokenizer.tokenize(tokens.map((t) => t.text))], [...ids]);
    const texts = await model.encodeTexts(tokens.map((t) => t.text), { batchSize: 4 });
    for (const c of rowCosines(texts.data, fixture('text_embeds').data as Float32Array, model.embedDim)) assert.ok(c >= 0.9999);
    // Per-row mixes through the public API equal the fixture's weight rows.
    const w = fixture('prompt_weights');
    const no = await model.encodeTextsNo(tokens.map((t) => t.text), w.data as Float32Array, { batchSize: 4 });
    for (const c of rowCosines(no.data, fixture('text_no_embeds').data as Float32Array, model.embedDim)) assert.ok(c >= 0.9999);
    // The helpers: fixture row 0 is prompt 0 alone, row 1 the mean, row 4 no prompt.
    const mixes = [promptWeights.single(0), promptWeights.mean(), promptWeights.subset([0, 1]), promptWeights.single(3), promptWeights.none()];
    const viaHelpers = await model.encodeTextsNo(tokens.slice(0, 5).map((t) => t.text), mixes);
    const want = fixture('text_no_embeds').data as Float32Array;
    for (const c of rowCosines(viaHelpers.data, want.subarray(0, 5 * model.embedDim), model.embedDim)) assert.ok(c >= 0.9999);
  });

  test('images encode end to end like PIL + torchvision + PyTorch (cosine >= 0.999)', async () => {
    const dir = path.join(work, 'pil-images');
    const ref = runPythonJson<{ files: string[]; embeds: number[][] }>(
      `
import json, sys
import numpy as np, torch
from pathlib import Path
from PIL import Image, ImageOps
from torchvision import transforms
from clipn.checkpoint import load_clipn
args = json.load(sys.stdin)
out = Path(args["dir"]); out.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(0)
def smooth(h, w, c):
    base = rng.random((h // 4 + 2, w // 4 + 2, c))
    img = Image.fromarray((base * 255).astype(np.uint8).squeeze()).resize((w, h), Image.BILINEAR)
    return img
specs = [("a.png", 40, 30, 3, "PNG"), ("b.jpg", 23, 57, 3, "JPEG"), ("c.png", 16, 16, 3, "PNG"),
         ("d.png", 64, 100, 1, "PNG"), ("e.jpg", 120, 90, 3, "JPEG")]
files = []
for name, w, h, c, fmt in specs:
    img = smooth(h, w, c)
    img.save(out / name, fmt, **({"quality": 92} if fmt == "JPEG" else {}))
    files.append(str(out / name))
model = load_clipn(Path(args["checkpoint"]))
t = transforms.Compose([transforms.Resize(16, interpolation=transforms.InterpolationMode.BICUBIC),
    transforms.CenterCrop(16), transforms.ToTensor(),
    transforms.Normalize((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))])
x = torch.stack([t(ImageOps.exif_transpose(Image.open(f)).convert("RGB")) for f in files])
with torch.no_grad():
    e = model.encode_image(x)
print(json.dumps({"files": files, "embeds": e.tolist()}))
`,
      { dir, checkpoint },
    );
    const got = await model.encodeImages(ref.files, { batchSize: 2 });
    assert.equal(got.failures.length, 0);
    assert.deepEqual(got.files, ref.files);
    const want = Float32Array.from(ref.embeds.flat());
    for (const c of rowCosines(got.data, want, model.embedDim)) assert.ok(c >= 0.999, `cosine ${c}`);
  });

  test('results do not depend on the batch size (1 vs 7, within 1e-6)', async () => {
    const one = await model.encodeImages(images, { batchSize: 1 });
    const seven = await model.encodeImages(images, { batchSize: 7 });
    assert.deepEqual(one.dims, [7, model.embedDim]);
    assert.deepEqual(one.indices, [0, 1, 2, 3, 4, 5, 6]);
    assert.ok(maxAbsDiff(one.data, seven.data) <= 1e-6, `max diff ${maxAbsDiff(one.data, seven.data)}`);
    // Buffers (with and without names) encode like their files.
    const bufs = await model.encodeImages([fs.readFileSync(images[0]), { name: 'second.png', data: fs.readFileSync(images[1]) }]);
    assert.deepEqual(bufs.files, ['<buffer 0>', 'second.png']);
    assert.ok(maxAbsDiff(bufs.data, one.data.subarray(0, 2 * model.embedDim)) <= 1e-6);
  });

  test('progress is monotone, reaches the total and reports a rate', async () => {
    const seen: Array<{ done: number; total: number; itemsPerSecond: number }> = [];
    await model.encodeImages(images, { batchSize: 2, onProgress: (p) => seen.push(p) });
    assert.deepEqual(seen.map((p) => p.done), [2, 4, 6, 7]);
    assert.ok(seen.every((p) => p.total === 7 && p.itemsPerSecond > 0 && Number.isFinite(p.itemsPerSecond)));
    const texts: number[] = [];
    await model.encodeTexts(['a', 'b', 'c', 'd', 'e'], { batchSize: 2, onProgress: (p) => texts.push(p.done) });
    assert.deepEqual(texts, [2, 4, 5]);
  });

  test('abort stops between batches within a second', async () => {
    const many = Array.from({ length: 2000 }, (_, i) => images[i % images.length]);
    const controller = new AbortController();
    let abortedAt = 0;
    let batchesAfterAbort = 0;
    const run = model.encodeImages(many, {
      batchSize: 8,
      signal: controller.signal,
      onProgress: (p) => {
        if (abortedAt) batchesAfterAbort++;
        if (p.done >= 16 && !abortedAt) {
          abortedAt = performance.now();
          controller.abort();
        }
      },
    });
    await assert.rejects(run, (err: Error) => err.name === 'AbortError');
    const latency = performance.now() - abortedAt;
    assert.ok(abortedAt > 0, 'never aborted');
    assert.ok(latency < 1000, `abort took ${latency} ms`);
    assert.equal(batchesAfterAbort, 0);
    // Aborted from outside (a timer, as the kernel's interrupt would), mid-run.
    const timed = new AbortController();
    let timerAbortAt = 0;
    let progressed = 0;
    const run2 = model.encodeImages(many, { batchSize: 8, signal: timed.signal, onProgress: (p) => (progressed = p.done) });
    setTimeout(() => {
      timerAbortAt = performance.now();
      timed.abort();
    }, 100);
    await assert.rejects(run2, { name: 'AbortError' });
    const latency2 = performance.now() - timerAbortAt;
    assert.ok(progressed > 0 && progressed < many.length, `progress at abort: ${progressed}`);
    assert.ok(latency2 < 1000, `timer abort took ${latency2} ms`);
    // An already-aborted signal rejects before any work.
    await assert.rejects(model.encodeImages(images, { signal: AbortSignal.abort() }), { name: 'AbortError' });
    await assert.rejects(model.encodeTexts(['a'], { signal: AbortSignal.abort() }), { name: 'AbortError' });
  });

  test('unreadable images are listed as failures with a reason; the rest are encoded', async () => {
    const bad = path.join(work, 'not-an-image.jpg');
    fs.writeFileSync(bad, 'this is text, not a JPEG');
    const missing = path.join(work, 'missing.png');
    const empty = path.join(work, 'empty.png');
    fs.writeFileSync(empty, '');
    const res = await model.encodeImages([images[0], bad, missing, images[1], empty], { batchSize: 2 });
    assert.deepEqual(res.dims, [2, model.embedDim]);
    assert.deepEqual(res.indices, [0, 3]);
    assert.deepEqual(res.failures.map((f) => [f.index, f.file]), [[1, bad], [2, missing], [4, empty]]);
    for (const f of res.failures) assert.ok(f.reason.length > 0);
    assert.match(res.failures[1].reason, /not found/);
    assert.match(res.failures[2].reason, /empty/);
    const ok = await model.encodeImages([images[0], images[1]]);
    assert.ok(maxAbsDiff(res.data, ok.data) <= 1e-6);
    // All bad: no rows, no exception.
    const none = await model.encodeImages([bad]);
    assert.deepEqual(none.dims, [0, model.embedDim]);
    assert.equal(none.failures.length, 1);
  });

  test('without a batchSize, images go in batches of the provider\'s size (imageBatchFor: 32 on cpu); a bad one is named', async () => {
    assert.deepEqual([imageBatchFor('cpu'), imageBatchFor('webgpu'), imageBatchFor('cuda')], [32, 64, 64]);
    const many = Array.from({ length: 70 }, (_, i) => images[i % images.length]);
    const done: number[] = [];
    const res = await model.encodeImages(many, { onProgress: (p) => done.push(p.done) });
    assert.equal(res.provider, 'cpu');
    assert.deepEqual(done, [32, 64, 70]);
    // The rows do not depend on the batching.
    const small = await model.encodeImages(many, { batchSize: 5 });
    assert.ok(maxAbsDiff(res.data, small.data) <= 1e-6);
    await assert.rejects(model.encodeImages(many, { batchSize: 0 }), /batchSize must be a positive integer, got 0/);
  });

  test('an empty image list is a clear error', async () => {
    await assert.rejects(model.encodeImages([]), /image list is empty/);
    await assert.rejects(model.encodeTexts([]), /prompt list is empty/);
  });

  test('wrong input dims name the graph, the expected and the given dims', async () => {
    const px = new Float32Array(3 * 8 * 8);
    await assert.rejects(model.encodePixels(px, [1, 3, 8, 8]), (err: Error) => {
      assert.match(err.message, /image graph/);
      assert.match(err.message, /\[1, 3, 8, 8\]/);
      assert.match(err.message, /\[B, 3, 16, 16\]/);
      return true;
    });
    // The micro model's text graphs take any token length 1..16 (text_sequence "variable"), not more.
    await assert.rejects(model.encodeTokenIds(new BigInt64Array(17), [1, 17]), /text graph: input_ids dims \[1, 17\].*\[B, 1\.\.16\]/);
    await assert.rejects(model.encodeTokenIds(new BigInt64Array(0), [1, 0]), /text graph: input_ids dims \[1, 0\].*\[B, 1\.\.16\]/);
    await assert.rejects(
      model.encodeTokenIdsNo(new BigInt64Array(16), [1, 16], new Float32Array(3), [1, 3]),
      /text_no graph: prompt_weights dims \[1, 3\].*\[B, 4\]/,
    );
    assert.throws(() => model.weightMatrix(promptWeights.single(9), 1), /prompt 9 does not exist: this model has 4/);
    assert.throws(() => model.weightMatrix(promptWeights.subset([]), 1), /at least one/);
    assert.throws(() => model.weightMatrix([promptWeights.mean()], 2), /1 prompt mixes for 2 prompts/);
  });
});

describe('execution providers', () => {
  test("order ['cuda', 'cpu'] uses cuda where its provider loads (the GPU run), else cpu with why cuda was skipped", async () => {
    const model = await ClipnModel.load(exportMicro().folder, { backend: { executionProviders: ['cuda', 'cpu'] } });
    try {
      const res = await model.encodeTexts(['a photo of a circle.']);
      if (res.provider === 'cuda') {
        assert.deepEqual(res.providerReport, { used: 'cuda', skipped: [] });
        return;
      }
      assert.equal(res.provider, 'cpu');
      assert.equal(res.providerReport.used, 'cpu');
      assert.equal(res.providerReport.skipped.length, 1);
      assert.equal(res.providerReport.skipped[0].name, 'cuda');
      assert.match(res.providerReport.skipped[0].reason, /Cuda|CUDA|cuda/);
      assert.match(res.providerReport.skipped[0].reason, /shared librar/);
      // Without the provider libraries the reason names the npm-only route (cuda-provider.ts).
      const { binaryDir } = onnxruntimeNode();
      if (!CUDA_PROVIDER_FILES.every((f) => fs.existsSync(path.join(binaryDir, f)))) {
        assert.match(res.providerReport.skipped[0].reason, /not in .*`clipn\.js cuda-provider` \(the CLI\) installs them from the npm registry/);
      }
      // The second graph reuses the recorded reason instead of probing again.
      const img = await model.providerReport('image');
      assert.deepEqual(img, res.providerReport);
    } finally {
      await model.dispose();
    }
  });

  test("the default order is ['cuda', 'webgpu', 'cpu'] and every skip before the used one has a reason", async () => {
    const model = await ClipnModel.load(exportMicro().folder);
    try {
      assert.deepEqual(model.backend.executionProviders, ['cuda', 'webgpu', 'cpu']);
      const report = await model.providerReport('image');
      const order = ['cuda', 'webgpu', 'cpu'];
      assert.ok(order.includes(report.used));
      assert.deepEqual(report.skipped.map((s) => s.name), order.slice(0, order.indexOf(report.used)));
      for (const s of report.skipped) assert.ok(s.reason.length > 10, `${s.name}: ${s.reason}`);
    } finally {
      await model.dispose();
    }
  });

  test('a provider this build lacks is skipped with a reason; no usable provider is an error naming the graph', async () => {
    const model = await ClipnModel.load(exportMicro().folder, { backend: { executionProviders: ['dml', 'cpu'] } });
    try {
      const report = await model.providerReport('text');
      assert.equal(report.used, 'cpu');
      assert.match(report.skipped[0].reason, /not available in onnxruntime-node/);
    } finally {
      await model.dispose();
    }
    const gpuOnly = await ClipnModel.load(exportMicro().folder, { backend: { executionProviders: ['cuda'] } });
    try {
      await assert.rejects(gpuOnly.encodeTexts(['x']), /text graph .*text_encoder\.onnx: no execution provider could run it.*add "cpu"/);
    } finally {
      await gpuOnly.dispose();
    }
  });

  test('dispose releases the sessions; a disposed model refuses work, a new one gives identical results', async () => {
    const model = await ClipnModel.load(exportMicro().folder, { backend: { executionProviders: ['cpu'] } });
    const a = await model.encodeTexts(['a photo of a circle.']);
    await model.dispose();
    await assert.rejects(model.encodeTexts(['a photo of a circle.']), /disposed/);
    const again = await ClipnModel.load(exportMicro().folder, { backend: { executionProviders: ['cpu'] } });
    const b = await again.encodeTexts(['a photo of a circle.']);
    assert.ok(maxAbsDiff(a.data, b.data) === 0);
    await again.dispose();
  });
});

describe('model folder errors', () => {
  test('a missing folder or manifest names the path and the fix', async () => {
    const { workDir } = exportMicro();
    await assert.rejects(loadManifest(path.join(workDir, 'nope')), (err: Error) => {
      assert.ok(err instanceof ManifestError);
      assert.match(err.message, /nope: model folder not found; point the model setting at a folder written by models\/export/);
      return true;
    });
    const empty = path.join(workDir, 'empty-folder');
    fs.mkdirSync(empty, { recursive: true });
    await assert.rejects(
      ClipnModel.load(empty),
      new RegExp(`${empty}/clipn\\.json not found: point the model setting at a folder written by models/export`),
    );
  });

  test('a flipped byte fails the hash check, naming the file, both digests and the fix', async () => {
    const copy = copyModelFolder(exportMicro().folder, 'flipped');
    const file = path.join(copy, 'text_encoder.onnx');
    const bytes = fs.readFileSync(file);
    bytes[bytes.length >> 1] ^= 0xff;
    fs.writeFileSync(file, bytes);
    const manifest = JSON.parse(fs.readFileSync(path.join(copy, 'clipn.json'), 'utf8'));
    await assert.rejects(loadManifest(copy), (err: Error) => {
      assert.match(err.message, new RegExp(`${file}: sha256 mismatch`));
      assert.match(err.message, new RegExp(`expected ${manifest.files['text_encoder.onnx']}`));
      assert.match(err.message, /actual [0-9a-f]{64}/);
      assert.match(err.message, /re-export the model with models\/export or re-download/);
      return true;
    });
    // verify 'none' skips hashing (and so loads), the others do not.
    assert.equal((await loadManifest(copy, { verify: 'none' })).verification, 'skipped');
  });

  test('the verified cache skips re-hashing unchanged files and notices changed ones', async () => {
    const copy = copyModelFolder(exportMicro().folder, 'cached');
    const cacheDir = path.join(exportMicro().workDir, 'verify-cache');
    assert.equal((await loadManifest(copy, { cacheDir })).verification, 'hashed');
    assert.equal((await loadManifest(copy, { cacheDir })).verification, 'cached');
    assert.equal((await loadManifest(copy, { verify: 'full' })).verification, 'hashed');
    assert.equal(fs.readdirSync(cacheDir).filter((f) => f.startsWith('clipn-verified-')).length, 1);
    const file = path.join(copy, 'prompt_no.npy');
    const bytes = fs.readFileSync(file);
    bytes[bytes.length - 1] ^= 0x01;
    fs.writeFileSync(file, bytes); // new mtime/ctime: the cache entry no longer applies
    await assert.rejects(loadManifest(copy, { cacheDir }), /prompt_no\.npy: sha256 mismatch/);
  });

  test('a missing graph file is named', async () => {
    const copy = copyModelFolder(exportMicro().folder, 'no-graph');
    fs.rmSync(path.join(copy, 'image_encoder.onnx'));
    await assert.rejects(loadManifest(copy), /image_encoder\.onnx: named by field "graphs\.image" of .*clipn\.json but not found/);
  });

  test('bad manifest fields name the field', async () => {
    const copy = copyModelFolder(exportMicro().folder, 'bad-field');
    const mpath = path.join(copy, 'clipn.json');
    const good = fs.readFileSync(mpath, 'utf8');
    const edit = (fn: (m: Record<string, any>) => void) => {
      const m = JSON.parse(good);
      fn(m);
      fs.writeFileSync(mpath, JSON.stringify(m));
    };
    edit((m) => delete m.architecture.vision.image_size);
    await assert.rejects(loadManifest(copy), /clipn\.json: field "architecture\.vision\.image_size" must be a positive integer \(missing\)/);
    edit((m) => (m.preprocess.mean = [0.5, 0.5]));
    await assert.rejects(loadManifest(copy), /field "preprocess\.mean" must be a list of 3 numbers/);
    edit((m) => (m.embed_dim = 64));
    await assert.rejects(loadManifest(copy), /field "embed_dim" \(64\) disagrees with "architecture\.embed_dim" \(32\)/);
    edit((m) => (m.graphs.text = '../../etc/passwd'));
    await assert.rejects(loadManifest(copy), /field "graphs\.text" .* must be a path inside the model folder/);
    edit((m) => (m.format_version = 9));
    await assert.rejects(loadManifest(copy), /format_version 9 is newer than this extension reads/);
    fs.writeFileSync(mpath, '{ not json');
    await assert.rejects(loadManifest(copy), /clipn\.json: not valid JSON/);
  });

  test('a graph that does not fit its manifest is named when its session opens', async () => {
    // Swap the text graph for the image graph (hashes updated): the manifest check must catch it.
    const copy = copyModelFolder(exportMicro().folder, 'swapped');
    const mpath = path.join(copy, 'clipn.json');
    const m = JSON.parse(fs.readFileSync(mpath, 'utf8'));
    m.graphs.text = 'image_encoder.onnx';
    m.io.text = ['pixel_values'];
    fs.writeFileSync(mpath, JSON.stringify(m));
    const model = await ClipnModel.load(copy, { backend: { executionProviders: ['cpu'] } });
    try {
      await assert.rejects(model.encodeTexts(['x']), /text graph .*image_encoder\.onnx: input "pixel_values" has shape \[batch, 3, 16, 16\] but clipn\.json implies \[B, 1\.\.16\]/);
    } finally {
      await model.dispose();
    }
  });
});

describe('bundled default model (when built)', () => {
  test('parity fixture', { skip: !defaultModelPresent() && 'models/default/ not built yet' }, async () => {
    const model = await ClipnModel.load(DEFAULT_MODEL_DIR, { backend: { executionProviders: ['cpu'] } });
    try {
      const fx = (n: string) => readNpy(path.join(DEFAULT_MODEL_DIR, model.manifest.fixture ?? 'parity', `${n}.npy`));
      const px = fx('pixel_values');
      const img = await model.encodePixels(px.data as Float32Array, px.shape);
      for (const c of rowCosines(img.data, fx('image_embeds').data as Float32Array, model.embedDim)) assert.ok(c >= 0.9999);
      const ids = fx('input_ids');
      const w = fx('prompt_weights');
      const no = await model.encodeTokenIdsNo(ids.data as BigInt64Array, ids.shape, w.data as Float32Array, w.shape);
      for (const c of rowCosines(no.data, fx('text_no_embeds').data as Float32Array, model.embedDim)) assert.ok(c >= 0.9999);
      const yes = await model.encodeTokenIds(ids.data as BigInt64Array, ids.shape);
      for (const c of rowCosines(yes.data, fx('text_embeds').data as Float32Array, model.embedDim)) assert.ok(c >= 0.9999);
      // Through the public API each fixture text runs at its own token length (text_sequence
      // "variable"), and still matches PyTorch at full context.
      assert.equal(model.manifest.text_sequence, 'variable');
      const texts = (JSON.parse(fs.readFileSync(path.join(DEFAULT_MODEL_DIR, model.manifest.fixture ?? 'parity', 'tokens.json'), 'utf8')) as Array<{ text: string }>).map((t) => t.text);
      const yesTexts = await model.encodeTexts(texts);
      for (const c of rowCosines(yesTexts.data, fx('text_embeds').data as Float32Array, model.embedDim)) assert.ok(c >= 0.9999, `text cosine ${c}`);
      const noTexts = await model.encodeTextsNo(texts, w.data as Float32Array);
      for (const c of rowCosines(noTexts.data, fx('text_no_embeds').data as Float32Array, model.embedDim)) assert.ok(c >= 0.9999, `text_no cosine ${c}`);
    } finally {
      await model.dispose();
    }
  });
});
