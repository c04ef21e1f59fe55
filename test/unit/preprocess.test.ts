// extension/engine/preprocess.ts against torchvision's eval transform on PIL images:
//   ImageOps.exif_transpose(Image.open(f)).convert("RGB") -> Resize(size, BICUBIC)
//   -> CenterCrop(size) -> ToTensor -> Normalize(mean, std)
// Test images are generated here with sharp (nothing is checked in).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';
import type { Sharp } from 'sharp';

import {
  PreprocessConfig,
  ImagePreprocessError,
  decodeImageRGB,
  gifTransparentColour,
  preprocessBatch,
  preprocessImage,
  preprocessImageUint8,
  preprocessInto,
  validatePreprocessConfig,
} from '../../extension/engine/preprocess';
import { resizeCropGeometry } from '../../extension/engine/pil-resize-crop';
import { runPythonJson } from './helpers/python';

/** Tolerance on the mean absolute difference of the normalised tensors (brief: <= 0.02). */
const MAD_TOLERANCE = 0.02;
/** Lossless formats decode to the same pixels in PIL and sharp: the tensors must be identical. */
const EXACT_TOLERANCE = 1e-6;

const MEAN: [number, number, number] = [0.48145466, 0.4578275, 0.40821073];
const STD: [number, number, number] = [0.26862954, 0.26130258, 0.27577711];
const cfg = (size: number): PreprocessConfig => ({ size, resize_mode: 'shortest', interpolation: 'bicubic', crop: 'center', mean: MEAN, std: STD });

let dir = '';

/** A photo-like test pattern: gradients, a disc, a bar, a texture and noise. */
function pattern(width: number, height: number, channels: 1 | 2 | 3 | 4, seed = 1): Sharp {
  const buf = Buffer.alloc(width * height * channels);
  let s = seed;
  const rnd = () => (s = (Math.imul(s, 1103515245) + 12345) & 0x7fffffff) / 0x7fffffff;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * channels;
      const cx = x - width / 2;
      const cy = y - height / 2;
      const disc = cx * cx + cy * cy < (Math.min(width, height) / 3) ** 2;
      const bar = x > width * 0.1 && x < width * 0.3 && y > height * 0.6 && y < height * 0.9;
      const noise = (rnd() - 0.5) * 60;
      const r = disc ? 230 : (255 * x) / width;
      const g = bar ? 20 : (255 * y) / height;
      const b = 128 + 60 * Math.sin(x / 7) * Math.cos(y / 5) + noise;
      const px = [r, g, b];
      if (channels <= 2) buf[i] = clamp(0.299 * r + 0.587 * g + 0.114 * b + noise / 3);
      else for (let c = 0; c < 3; c++) buf[i + c] = clamp(px[c] + (c === 2 ? 0 : noise / 2));
      if (channels === 2 || channels === 4) buf[i + channels - 1] = disc ? 255 : clamp((255 * ((x + 2 * y) % 64)) / 63);
    }
  }
  return sharp(buf, { raw: { width, height, channels } });
}
function clamp(v: number): number {
  return Math.max(0, Math.min(255, Math.round(v)));
}

interface Sample {
  file: string;
  kind: string;
  lossless: boolean;
  /** compare against torchvision on this file instead (documented deviations) */
  referenceFile?: string;
}
const samples: Sample[] = [];

async function make(name: string, kind: string, lossless: boolean, build: () => Promise<unknown>, referenceFile?: string) {
  await build();
  samples.push({ file: path.join(dir, name), kind, lossless, referenceFile: referenceFile && path.join(dir, referenceFile) });
}

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clipn-pre-'));
  const p = (n: string) => path.join(dir, n);
  await make('photo_500x375.jpg', 'JPEG 500x375', false, () => pattern(500, 375, 3).jpeg({ quality: 90 }).toFile(p('photo_500x375.jpg')));
  await make('photo_375x500.jpg', 'JPEG 375x500 (4:2:0)', false, () => pattern(375, 500, 3, 2).jpeg({ quality: 80, chromaSubsampling: '4:2:0' }).toFile(p('photo_375x500.jpg')));
  await make('wide_1000x40.jpg', 'JPEG 1000x40 (upsampled)', false, () => pattern(1000, 40, 3, 3).jpeg().toFile(p('wide_1000x40.jpg')));
  await make('tiny_31x17.png', 'PNG 31x17 (upsampled)', true, () => pattern(31, 17, 3, 4).png().toFile(p('tiny_31x17.png')));
  await make('square_224.png', 'PNG 224x224', true, () => pattern(224, 224, 3, 5).png().toFile(p('square_224.png')));
  await make('odd_225x227.png', 'PNG 225x227 (crop rounding)', true, () => pattern(225, 227, 3, 6).png().toFile(p('odd_225x227.png')));
  await make('alpha.png', 'PNG RGBA', true, () => pattern(500, 375, 4, 7).png().toFile(p('alpha.png')));
  await make('grey.png', 'PNG greyscale', true, () => pattern(500, 375, 1, 8).png().toFile(p('grey.png')));
  await make('grey_alpha.png', 'PNG greyscale+alpha', true, () => pattern(300, 200, 2, 9).toColourspace('b-w').png().toFile(p('grey_alpha.png')));
  await make('palette_trns.png', 'PNG palette+tRNS', true, () => pattern(300, 200, 4, 10).png({ palette: true, colours: 64 }).toFile(p('palette_trns.png')));
  await make('rgb16.png', 'PNG 16-bit RGB', true, () => pattern(500, 375, 3, 11).toColourspace('rgb16').png().toFile(p('rgb16.png')));
  // 16-bit greyscale: PIL clips mode "I" to 255 in convert("RGB") (white image); the engine
  // scales to 8 bits, so it is compared with torchvision on the 8-bit source.
  await make('grey16.png', 'PNG 16-bit grey (vs 8-bit source)', true, () => pattern(500, 375, 1, 8).toColourspace('grey16').png().toFile(p('grey16.png')), 'grey.png');
  await make('grey.jpg', 'JPEG greyscale', false, () => pattern(400, 300, 1, 12).jpeg().toFile(p('grey.jpg')));
  await make('cmyk.jpg', 'JPEG CMYK', false, () => pattern(500, 375, 3, 13).toColourspace('cmyk').jpeg({ quality: 90 }).toFile(p('cmyk.jpg')));
  await make('exif6.jpg', 'JPEG EXIF orientation 6', false, () => pattern(500, 375, 3, 14).jpeg().withMetadata({ orientation: 6 }).toFile(p('exif6.jpg')));
  for (const o of [2, 3, 4, 5, 7, 8]) {
    await make(`exif${o}.jpg`, `JPEG EXIF orientation ${o}`, false, () => pattern(61, 40, 3, 20 + o).jpeg().withMetadata({ orientation: o }).toFile(p(`exif${o}.jpg`)));
  }
  await make('exif6.png', 'PNG EXIF orientation 6', true, () => pattern(61, 40, 3, 30).png().withMetadata({ orientation: 6 }).toFile(p('exif6.png')));
  await make('p3.jpg', 'JPEG with Display P3 ICC (ignored)', false, () => pattern(500, 375, 3, 15).jpeg().withIccProfile('p3').toFile(p('p3.jpg')));
  await make('lossy.webp', 'WebP lossy', false, () => pattern(500, 375, 3, 16).webp({ quality: 80 }).toFile(p('lossy.webp')));
  await make('alpha.webp', 'WebP with alpha', false, () => pattern(500, 375, 4, 17).webp({ quality: 80 }).toFile(p('alpha.webp')));
  await make('lossless.webp', 'WebP lossless', true, () => pattern(300, 200, 3, 18).webp({ lossless: true }).toFile(p('lossless.webp')));
  await make('opaque.gif', 'GIF', true, () => pattern(300, 200, 3, 19).gif().toFile(p('opaque.gif')));
  await make('transparent.gif', 'GIF with transparency', true, () => pattern(300, 200, 4, 20).gif().toFile(p('transparent.gif')));
  await make('photo.tiff', 'TIFF', true, () => pattern(300, 200, 3, 21).tiff().toFile(p('photo.tiff')));
  await make('cmyk.tiff', 'TIFF CMYK', true, () => pattern(300, 200, 3, 22).toColourspace('cmyk').tiff().toFile(p('cmyk.tiff')));
  await make('rgba16.png', 'PNG 16-bit RGBA', true, () => pattern(300, 200, 4, 23).toColourspace('rgb16').png().toFile(p('rgba16.png')));
});

after(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

const PY_REFERENCE = `
import base64, json, sys
from PIL import Image, ImageOps
import torchvision.transforms as T
d = json.load(sys.stdin)
out = {}
for size in d['sizes']:
    tf = T.Compose([T.Resize(size, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(size),
                    T.ToTensor(), T.Normalize(d['mean'], d['std'])])
    for f in d['files']:
        with Image.open(f) as im:
            x = tf(ImageOps.exif_transpose(im).convert('RGB'))
        out[f'{size}:{f}'] = base64.b64encode(x.numpy().astype('<f4').tobytes()).decode()
print(json.dumps(out))
`;

function fromBase64(b64: string): Float32Array {
  const buf = Buffer.from(b64, 'base64');
  return new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length));
}

function diff(a: Float32Array, b: Float32Array): { mad: number; max: number } {
  assert.equal(a.length, b.length);
  let sum = 0;
  let max = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    sum += d;
    if (d > max) max = d;
  }
  return { mad: sum / a.length, max };
}

for (const size of [224, 32]) {
  test(`matches torchvision's eval transform, size ${size} (MAD <= ${MAD_TOLERANCE}; lossless formats exact)`, async () => {
    const files = [...new Set(samples.map((s) => s.referenceFile ?? s.file))];
    const ref = runPythonJson<Record<string, string>>(PY_REFERENCE, { sizes: [size], files, mean: MEAN, std: STD });
    const lines: string[] = [];
    for (const s of samples) {
      const ours = await preprocessImage(s.file, cfg(size));
      assert.equal(ours.length, 3 * size * size);
      const theirs = fromBase64(ref[`${size}:${s.referenceFile ?? s.file}`]);
      const { mad, max } = diff(ours, theirs);
      lines.push(`#   ${s.kind.padEnd(36)} MAD ${mad.toExponential(2)}  max ${max.toExponential(2)}`);
      assert.ok(mad <= MAD_TOLERANCE, `${s.kind} (${s.file}): MAD ${mad} > ${MAD_TOLERANCE}`);
      if (s.lossless) assert.ok(max <= EXACT_TOLERANCE, `${s.kind} (${s.file}): max |diff| ${max} (expected identical tensors)`);
    }
    console.log(`# preprocess vs torchvision, size ${size}:\n${lines.join('\n')}`);
  });
}

test('resize/crop geometry matches torchvision (Resize int size, CenterCrop rounding)', () => {
  const cases: Array<[number, number, number]> = [];
  for (const size of [224, 32, 7]) {
    for (const [w, h] of [[500, 375], [375, 500], [31, 17], [1000, 40], [224, 224], [225, 224], [224, 227], [299, 224], [333, 500], [1, 1], [2, 301], [4000, 3000]]) {
      cases.push([w, h, size]);
    }
  }
  const expected = runPythonJson<number[][]>(
    `import json, sys
from torchvision.transforms.functional import _compute_resized_output_size
out = []
for w, h, size in json.load(sys.stdin):
    nh, nw = _compute_resized_output_size((h, w), [size])
    out.append([nw, nh, int(round((nw - size) / 2.0)), int(round((nh - size) / 2.0))])
print(json.dumps(out))`,
    cases,
  );
  cases.forEach(([w, h, size], i) => {
    const g = resizeCropGeometry(w, h, size);
    assert.deepEqual([g.resizedWidth, g.resizedHeight, g.left, g.top], expected[i], `${w}x${h} -> ${size}`);
  });
});

test('decoding: alpha dropped (not composited), EXIF applied, 16-bit scaled, CMYK like Pillow', async () => {
  const byName = (n: string) => path.join(dir, n);
  const rgba = await decodeImageRGB(byName('alpha.png'));
  const raw = await sharp(byName('alpha.png')).raw().toBuffer({ resolveWithObject: true });
  assert.equal(raw.info.channels, 4);
  for (let i = 0; i < 1000; i++) {
    for (let c = 0; c < 3; c++) assert.equal(rgba.data[i * 3 + c], raw.data[i * 4 + c]);
  }
  const rotated = await decodeImageRGB(byName('exif6.jpg'));
  assert.deepEqual([rotated.width, rotated.height], [375, 500]);
  const grey = await decodeImageRGB(byName('grey.png'));
  const grey16 = await decodeImageRGB(byName('grey16.png'));
  assert.deepEqual(Buffer.from(grey16.data), Buffer.from(grey.data));
  assert.ok(gifTransparentColour(fs.readFileSync(byName('transparent.gif'))) !== null);
  assert.equal(gifTransparentColour(fs.readFileSync(byName('opaque.gif'))), null);
  assert.equal(gifTransparentColour(fs.readFileSync(byName('grey.png'))), null);
});

test('Buffer input gives the same tensor as the path', async () => {
  const file = path.join(dir, 'photo_500x375.jpg');
  const a = await preprocessImage(file, cfg(224));
  const b = await preprocessImage(fs.readFileSync(file), cfg(224));
  assert.deepEqual(b, a);
  const u8 = await preprocessImageUint8(file, cfg(32));
  assert.equal(u8.length, 32 * 32 * 3);
});

test('batch helper writes each image at its offset of a preallocated tensor', async () => {
  const size = 32;
  const per = 3 * size * size;
  const files = samples.slice(0, 5).map((s) => s.file);
  const out = new Float32Array(per * 7).fill(42);
  await preprocessBatch(files, cfg(size), { out, offset: per, concurrency: 2 });
  for (let i = 0; i < files.length; i++) {
    const single = await preprocessImage(files[i], cfg(size));
    assert.deepEqual(out.subarray(per * (i + 1), per * (i + 2)), single);
  }
  assert.ok(out.subarray(0, per).every((v) => v === 42));
  assert.ok(out.subarray(per * 6).every((v) => v === 42));
  const fresh = await preprocessBatch(files, cfg(size));
  assert.deepEqual(fresh, out.subarray(per, per * 6));
  const slot = new Float32Array(per * 2);
  await preprocessInto(files[0], cfg(size), slot, per);
  assert.deepEqual(slot.subarray(per), await preprocessImage(files[0], cfg(size)));
  await assert.rejects(preprocessInto(files[0], cfg(size), slot, per + 1), RangeError);
  await assert.rejects(preprocessBatch(files, cfg(size), { out: new Float32Array(per) }), RangeError);
});

test('unreadable inputs fail with an error naming the file and the reason', async () => {
  const good = fs.readFileSync(path.join(dir, 'photo_500x375.jpg'));
  const truncated = path.join(dir, 'truncated.jpg');
  fs.writeFileSync(truncated, good.subarray(0, Math.floor(good.length / 3)));
  const truncatedPng = path.join(dir, 'truncated.png');
  const png = fs.readFileSync(path.join(dir, 'alpha.png'));
  fs.writeFileSync(truncatedPng, png.subarray(0, Math.floor(png.length / 3)));
  const text = path.join(dir, 'notes.png');
  fs.writeFileSync(text, 'this is a text file, not a PNG\n');
  const empty = path.join(dir, 'empty.jpg');
  fs.writeFileSync(empty, '');
  const missing = path.join(dir, 'missing.jpg');
  const cases: Array<[string, RegExp]> = [
    [truncated, /corrupt or truncated/],
    [truncatedPng, /corrupt or truncated/],
    [text, /not a supported image/],
    [empty, /empty file/],
    [missing, /not found/],
  ];
  for (const [file, reason] of cases) {
    await assert.rejects(preprocessImage(file, cfg(32)), (err: unknown) => {
      assert.ok(err instanceof ImagePreprocessError, String(err));
      assert.equal(err.file, file);
      assert.ok(err.message.startsWith(`${file}: `), err.message);
      assert.match(err.message, reason);
      return true;
    });
  }
  await assert.rejects(preprocessImage(Buffer.from('nope'), cfg(32), 'upload.png'), /^ImagePreprocessError: upload.png: not a supported image/);
  // a batch stops at the broken file and names it
  await assert.rejects(preprocessBatch([path.join(dir, 'grey.png'), text], cfg(32)), (err: Error) => err.message.startsWith(`${text}: `));
});

test('manifest preprocess objects are validated', () => {
  assert.deepEqual(validatePreprocessConfig(cfg(224)), cfg(224));
  const bad: Array<[unknown, RegExp]> = [
    [null, /expected an object/],
    [{ ...cfg(224), size: 0 }, /size/],
    [{ ...cfg(224), size: 22.5 }, /size/],
    [{ ...cfg(224), resize_mode: 'longest' }, /resize_mode/],
    [{ ...cfg(224), interpolation: 'bilinear' }, /interpolation/],
    [{ ...cfg(224), crop: 'none' }, /crop/],
    [{ ...cfg(224), mean: [0.5, 0.5] }, /mean/],
    [{ ...cfg(224), std: [0.5, 0, 0.5] }, /std/],
  ];
  for (const [value, re] of bad) assert.throws(() => validatePreprocessConfig(value, 'model/clipn.json'), (e: Error) => e.message.startsWith('model/clipn.json: ') && re.test(e.message));
});

test('throughput: 200 JPEGs 500x375, 2 in flight', async () => {
  const benchDir = path.join(dir, 'bench');
  fs.mkdirSync(benchDir);
  const files: string[] = [];
  const base = await pattern(500, 375, 3, 99).raw().toBuffer();
  for (let i = 0; i < 200; i++) {
    const buf = Buffer.from(base);
    for (let j = i; j < buf.length; j += 997) buf[j] ^= 0x55; // distinct files
    const file = path.join(benchDir, `${i}.jpg`);
    await sharp(buf, { raw: { width: 500, height: 375, channels: 3 } }).jpeg({ quality: 90 }).toFile(file);
    files.push(file);
  }
  const size = 224;
  const t0 = process.hrtime.bigint();
  const out = await preprocessBatch(files, cfg(size), { concurrency: 2 });
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  assert.equal(out.length, 200 * 3 * size * size);
  // Same machine, same moment: sharp alone decoding + resizing (cubic, not PIL-exact), for scale.
  let next = 0;
  const t1 = process.hrtime.bigint();
  await Promise.all(
    [0, 1].map(async () => {
      while (next < files.length) {
        const file = files[next++];
        await sharp(file).resize(298, 224, { kernel: 'cubic', fit: 'fill' }).extract({ left: 37, top: 0, width: 224, height: 224 }).raw().toBuffer();
      }
    }),
  );
  const sharpSeconds = Number(process.hrtime.bigint() - t1) / 1e9;
  console.log(
    `# preprocess throughput: ${(200 / seconds).toFixed(1)} images/s (engine, PIL-exact, 2 in flight); ` +
      `sharp-only decode+resize baseline ${(200 / sharpSeconds).toFixed(1)} images/s`,
  );
});
