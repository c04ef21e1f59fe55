// Eval image preprocessing: the TypeScript twin of the Python reference
//   ImageOps.exif_transpose(Image.open(f)).convert("RGB")
//   -> Resize(size, BICUBIC) -> CenterCrop(size) -> ToTensor -> Normalize(mean, std)
// (torchvision 0.14 on PIL images), driven by the model manifest's `preprocess` object.
//
// Decoding uses sharp (libvips) and then does what PIL does, not what libvips would do:
//   - embedded ICC profiles are ignored (PIL's convert("RGB") does not apply them);
//   - alpha is dropped, not composited (RGBA -> RGB keeps the stored colour);
//   - CMYK uses Pillow's naive formula (255 - K) * (1 - C/255), not an ICC transform;
//   - transparent GIF pixels take their palette colour (sharp gives black);
//   - EXIF orientation is applied (sharp autoOrient = ImageOps.exif_transpose).
// Resizing is a port of Pillow's bicubic resampler (pil-resize-crop.ts), evaluated only for the
// centre-crop window, so the uint8 crop is the one PIL makes, and the normalisation is done in
// float32 like torchvision.
// Known deviation: a 16-bit greyscale PNG is scaled to 8 bits (v >> 8) here; Pillow opens it as
// mode "I" and convert("RGB") clips every value above 255 to white.
import { promises as fsp } from 'node:fs';
import sharp from 'sharp';
import type { Metadata, OutputInfo, SharpOptions } from 'sharp';
import { resizeCropRGB } from './pil-resize-crop';

export interface PreprocessConfig {
  /** Resize the shorter side to this, then centre-crop size x size. */
  size: number;
  resize_mode: 'shortest';
  interpolation: 'bicubic';
  crop: 'center';
  mean: [number, number, number];
  std: [number, number, number];
}

/** Checks a manifest `preprocess` object; `where` names it in errors (e.g. the manifest path). */
export function validatePreprocessConfig(value: unknown, where = 'preprocess'): PreprocessConfig {
  const fail = (why: string): never => {
    throw new Error(`${where}: ${why}`);
  };
  if (typeof value !== 'object' || value === null) fail('expected an object');
  const v = value as Record<string, unknown>;
  if (!Number.isInteger(v.size) || (v.size as number) < 1) fail(`size must be a positive integer, got ${JSON.stringify(v.size)}`);
  if (v.resize_mode !== 'shortest') fail(`resize_mode ${JSON.stringify(v.resize_mode)} is not supported (only "shortest")`);
  if (v.interpolation !== 'bicubic') fail(`interpolation ${JSON.stringify(v.interpolation)} is not supported (only "bicubic")`);
  if (v.crop !== 'center') fail(`crop ${JSON.stringify(v.crop)} is not supported (only "center")`);
  for (const key of ['mean', 'std'] as const) {
    const arr = v[key];
    if (!Array.isArray(arr) || arr.length !== 3 || !arr.every((x) => typeof x === 'number' && Number.isFinite(x))) {
      fail(`${key} must be 3 finite numbers, got ${JSON.stringify(arr)}`);
    }
  }
  if ((v.std as number[]).some((x) => x === 0)) fail('std must not contain 0');
  return v as unknown as PreprocessConfig;
}

/** A file that could not be turned into pixels; the message names the file and the reason. */
export class ImagePreprocessError extends Error {
  constructor(
    readonly file: string,
    readonly reason: string,
  ) {
    super(`${file}: ${reason}`);
    this.name = 'ImagePreprocessError';
  }
}

export interface RgbImage {
  /** Interleaved RGB, 8 bits, row-major. */
  data: Uint8Array;
  width: number;
  height: number;
}

export type ImageInput = string | Buffer;

function describe(input: ImageInput, name?: string): string {
  return name ?? (typeof input === 'string' ? input : '<buffer>');
}

// ---------------------------------------------------------------------------------------------
// Decoding (PIL: Image.open + ImageOps.exif_transpose + convert("RGB"))

/** Colour of the transparent palette index of a GIF's first frame, if it has one. */
export function gifTransparentColour(buf: Uint8Array): [number, number, number] | null {
  if (buf.length < 13 || String.fromCharCode(buf[0], buf[1], buf[2]) !== 'GIF') return null;
  const flags = buf[10];
  let pos = 13;
  let table: Uint8Array | null = null;
  if (flags & 0x80) {
    const n = 3 * (1 << ((flags & 7) + 1));
    table = buf.subarray(pos, pos + n);
    pos += n;
  }
  let transparent = -1;
  while (pos < buf.length) {
    const block = buf[pos];
    if (block === 0x21) {
      // extension: label, then sub-blocks
      const label = buf[pos + 1];
      if (label === 0xf9 && buf[pos + 2] === 4 && buf[pos + 3] & 1) transparent = buf[pos + 6];
      pos += 2;
      while (pos < buf.length && buf[pos] !== 0) pos += buf[pos] + 1;
      pos += 1;
    } else if (block === 0x2c) {
      const local = buf[pos + 9];
      if (local & 0x80) table = buf.subarray(pos + 10, pos + 10 + 3 * (1 << ((local & 7) + 1)));
      break;
    } else {
      return null;
    }
  }
  if (transparent < 0 || table === null || 3 * transparent + 2 >= table.length) return null;
  return [table[3 * transparent], table[3 * transparent + 1], table[3 * transparent + 2]];
}

function classifySharpError(message: string): string {
  if (/unsupported image format/i.test(message)) return `not a supported image (${message})`;
  if (/premature end|truncat|read error|corrupt|invalid|bad|error/i.test(message)) return `corrupt or truncated image (${message})`;
  return `cannot decode image (${message})`;
}

/** Decodes any sharp-supported image (first frame/page) to 8-bit RGB the way PIL does. */
export async function decodeImageRGB(input: ImageInput, name?: string): Promise<RgbImage> {
  const file = describe(input, name);
  let buf: Buffer;
  if (typeof input === 'string') {
    try {
      buf = await fsp.readFile(input);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      throw new ImagePreprocessError(file, e.code === 'ENOENT' ? 'file not found' : `cannot read file (${e.message})`);
    }
  } else {
    buf = input;
  }
  if (buf.length === 0) throw new ImagePreprocessError(file, 'empty file (0 bytes), not an image');

  const options: SharpOptions = { ignoreIcc: true, failOn: 'warning', pages: 1, page: 0 };
  let meta: Metadata;
  try {
    meta = await sharp(buf, options).metadata();
  } catch (err) {
    throw new ImagePreprocessError(file, classifySharpError((err as Error).message));
  }
  if (!meta.width || !meta.height) throw new ImagePreprocessError(file, 'zero-size image');

  const cmyk = meta.space === 'cmyk';
  let pipeline = sharp(buf, options).autoOrient();
  // CMYK: keep the decoded CMYK values (no ICC round trip) and convert like Pillow below.
  if (cmyk) pipeline = pipeline.pipelineColourspace('cmyk').toColourspace('cmyk');
  let raw: { data: Buffer; info: OutputInfo };
  try {
    raw = await pipeline.raw().toBuffer({ resolveWithObject: true });
  } catch (err) {
    throw new ImagePreprocessError(file, classifySharpError((err as Error).message));
  }
  const { data, info } = raw;
  const { width, height, channels } = info;
  if (width === 0 || height === 0) throw new ImagePreprocessError(file, 'zero-size image');
  const n = width * height;
  if (data.length !== n * channels) {
    throw new ImagePreprocessError(file, `unexpected decoded layout (${data.length} bytes for ${width}x${height}x${channels})`);
  }
  if (!cmyk && channels === 3) return { data, width, height }; // the common case: no copy
  const rgb = new Uint8Array(n * 3);
  if (cmyk) {
    if (channels < 4) throw new ImagePreprocessError(file, `CMYK image decoded with ${channels} channels`);
    // Pillow Convert.c cmyk2rgb: nk = 255 - K; out = nk - MULDIV255(C, nk)
    for (let i = 0, s = 0; i < n * 3; i += 3, s += channels) {
      const nk = 255 - data[s + 3];
      for (let c = 0; c < 3; c++) {
        const t = data[s + c] * nk + 128;
        const v = nk - (((t >> 8) + t) >> 8);
        rgb[i + c] = v < 0 ? 0 : v > 255 ? 255 : v;
      }
    }
  } else if (channels >= 3) {
    for (let i = 0, s = 0; i < n * 3; i += 3, s += channels) {
      rgb[i] = data[s];
      rgb[i + 1] = data[s + 1];
      rgb[i + 2] = data[s + 2];
    }
    if (channels === 4 && meta.format === 'gif') {
      const colour = gifTransparentColour(buf);
      if (colour) {
        for (let i = 0; i < n; i++) {
          if (data[i * 4 + 3] === 0) {
            rgb[i * 3] = colour[0];
            rgb[i * 3 + 1] = colour[1];
            rgb[i * 3 + 2] = colour[2];
          }
        }
      }
    }
  } else {
    // greyscale (+ alpha): L -> RGB replicates
    for (let i = 0, s = 0; i < n * 3; i += 3, s += channels) {
      rgb[i] = rgb[i + 1] = rgb[i + 2] = data[s];
    }
  }
  return { data: rgb, width, height };
}

// ---------------------------------------------------------------------------------------------
// ToTensor + Normalize in float32

const lutCache = new Map<string, Float32Array>();

/** lut[c * 256 + v] = float32((float32(v / 255) - mean[c]) / std[c]), torchvision's arithmetic. */
function normalisationLut(mean: readonly number[], std: readonly number[]): Float32Array {
  const key = `${mean.join(',')}|${std.join(',')}`;
  let lut = lutCache.get(key);
  if (!lut) {
    lut = new Float32Array(3 * 256);
    for (let c = 0; c < 3; c++) {
      const m = Math.fround(mean[c]);
      const s = Math.fround(std[c]);
      for (let v = 0; v < 256; v++) lut[c * 256 + v] = Math.fround(Math.fround(Math.fround(v / 255) - m) / s);
    }
    lutCache.set(key, lut);
  }
  return lut;
}

/** Interleaved uint8 RGB [size, size, 3] -> normalised float32 CHW written at `offset`. */
export function normaliseToCHW(
  rgb: Uint8Array,
  size: number,
  mean: readonly number[],
  std: readonly number[],
  out: Float32Array = new Float32Array(3 * size * size),
  offset = 0,
): Float32Array {
  const plane = size * size;
  if (rgb.length !== plane * 3) throw new Error(`normaliseToCHW: expected ${plane * 3} bytes, got ${rgb.length}`);
  if (offset < 0 || offset + 3 * plane > out.length) {
    throw new RangeError(`normaliseToCHW: ${3 * plane} values at offset ${offset} do not fit in ${out.length}`);
  }
  const lut = normalisationLut(mean, std);
  for (let i = 0, s = 0; i < plane; i++, s += 3) {
    out[offset + i] = lut[rgb[s]];
    out[offset + plane + i] = lut[256 + rgb[s + 1]];
    out[offset + 2 * plane + i] = lut[512 + rgb[s + 2]];
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Public entry points

/** The uint8 crop [size, size, 3] the model sees, before normalisation. */
export async function preprocessImageUint8(input: ImageInput, cfg: PreprocessConfig, name?: string): Promise<Uint8Array> {
  const img = await decodeImageRGB(input, name);
  return resizeCropRGB(img, cfg.size);
}

/** One image -> float32 CHW [3, size, size] (length 3 * size * size). */
export async function preprocessImage(input: ImageInput, cfg: PreprocessConfig, name?: string): Promise<Float32Array> {
  const crop = await preprocessImageUint8(input, cfg, name);
  return normaliseToCHW(crop, cfg.size, cfg.mean, cfg.std);
}

/** One image written into `out` at `offset` (a slot of a [B, 3, S, S] batch tensor). */
export async function preprocessInto(
  input: ImageInput,
  cfg: PreprocessConfig,
  out: Float32Array,
  offset: number,
  name?: string,
): Promise<void> {
  const per = 3 * cfg.size * cfg.size;
  if (offset < 0 || offset + per > out.length) {
    throw new RangeError(`preprocessInto: ${per} values at offset ${offset} do not fit in ${out.length}`);
  }
  const crop = await preprocessImageUint8(input, cfg, name);
  normaliseToCHW(crop, cfg.size, cfg.mean, cfg.std, out, offset);
}

export interface BatchOptions {
  /** Images decoded at the same time (default 2). */
  concurrency?: number;
  /** Preallocated output; image i goes to offset + i * 3 * S * S. */
  out?: Float32Array;
  offset?: number;
}

/** Many images -> float32 [n, 3, S, S]; rejects with the first failing file's error. */
export async function preprocessBatch(
  inputs: ReadonlyArray<ImageInput>,
  cfg: PreprocessConfig,
  options: BatchOptions = {},
): Promise<Float32Array> {
  const per = 3 * cfg.size * cfg.size;
  const offset = options.offset ?? 0;
  const out = options.out ?? new Float32Array(offset + inputs.length * per);
  if (offset < 0 || offset + inputs.length * per > out.length) {
    throw new RangeError(`preprocessBatch: ${inputs.length} images at offset ${offset} do not fit in ${out.length}`);
  }
  const concurrency = Math.max(1, Math.floor(options.concurrency ?? 2));
  let next = 0;
  let failed: unknown = null;
  const worker = async (): Promise<void> => {
    while (failed === null && next < inputs.length) {
      const i = next++;
      try {
        await preprocessInto(inputs[i], cfg, out, offset + i * per);
      } catch (err) {
        failed ??= err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, inputs.length) }, worker));
  if (failed !== null) throw failed;
  return out;
}
