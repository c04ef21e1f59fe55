// Resize(size, BICUBIC) + CenterCrop(size) as torchvision 0.14 does them on a PIL image: a port
// of Pillow's bicubic resampler (libImaging/Resample.c: a = -0.5, support scaled when
// downsampling, 22-bit fixed-point coefficients, horizontal pass then vertical with 8-bit
// rounding in between), evaluated only for the centre-crop window, so the uint8 crop is the one
// PIL makes (preprocess.ts decodes the image and normalises the crop).
import type { RgbImage } from './preprocess';

// ---------------------------------------------------------------------------------------------
// Geometry (torchvision 0.14 Resize with an int size, CenterCrop)

/** Python's round() for x = k or k + 0.5 and beyond: half to even. */
function pyRound(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

export interface ResizeCropGeometry {
  /** Size after Resize(size): the shorter side is `size`. */
  resizedWidth: number;
  resizedHeight: number;
  /** CenterCrop offsets in the resized image. */
  left: number;
  top: number;
  size: number;
}

export function resizeCropGeometry(width: number, height: number, size: number): ResizeCropGeometry {
  let resizedWidth: number;
  let resizedHeight: number;
  if (width <= height) {
    resizedWidth = size;
    resizedHeight = Math.trunc((size * height) / width);
  } else {
    resizedHeight = size;
    resizedWidth = Math.trunc((size * width) / height);
  }
  return {
    resizedWidth,
    resizedHeight,
    left: pyRound((resizedWidth - size) / 2),
    top: pyRound((resizedHeight - size) / 2),
    size,
  };
}

// ---------------------------------------------------------------------------------------------
// Pillow's bicubic resampler (libImaging/Resample.c, 8 bits per channel)

const PRECISION_BITS = 32 - 8 - 2;
const HALF = 1 << (PRECISION_BITS - 1);
const CLIP_MAX = 1 << (PRECISION_BITS + 8);

function bicubicFilter(x: number): number {
  const a = -0.5;
  if (x < 0) x = -x;
  if (x < 1) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
  return 0;
}

interface Coefficients {
  ksize: number;
  /** [outSize * ksize] fixed-point weights */
  kk: Int32Array;
  /** [outSize * 2]: first input index, count */
  bounds: Int32Array;
}

/** precompute_coeffs + normalize_coeffs_8bpc for the box (0, inSize). */
function precomputeCoeffs(inSize: number, outSize: number): Coefficients {
  const scale = inSize / outSize;
  const filterscale = scale < 1 ? 1 : scale;
  const support = 2.0 * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const kk = new Int32Array(outSize * ksize);
  const bounds = new Int32Array(outSize * 2);
  const k = new Float64Array(ksize);
  const ss = 1.0 / filterscale;
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    let ww = 0;
    let xmin = Math.trunc(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    let xmax = Math.trunc(center + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    for (let x = 0; x < xmax; x++) {
      const w = bicubicFilter((x + xmin - center + 0.5) * ss);
      k[x] = w;
      ww += w;
    }
    for (let x = 0; x < xmax; x++) {
      const v = ww !== 0 ? k[x] / ww : k[x];
      kk[xx * ksize + x] = v < 0 ? Math.trunc(-0.5 + v * (1 << PRECISION_BITS)) : Math.trunc(0.5 + v * (1 << PRECISION_BITS));
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return { ksize, kk, bounds };
}

function clip8(v: number): number {
  if (v >= CLIP_MAX) return 255;
  if (v <= 0) return 0;
  return v >> PRECISION_BITS;
}

/**
 * Resize(size, BICUBIC) + CenterCrop(size) of an RGB image, exactly as PIL computes it, but
 * only for the pixels the crop keeps. Returns interleaved RGB [size, size, 3].
 */
export function resizeCropRGB(img: RgbImage, size: number): Uint8Array {
  const { data: src, width: w, height: h } = img;
  const g = resizeCropGeometry(w, h, size);
  const needH = g.resizedWidth !== w;
  const needV = g.resizedHeight !== h;
  const out = new Uint8Array(size * size * 3);
  if (!needH && !needV) {
    // PIL returns a copy: only the crop
    for (let y = 0; y < size; y++) {
      const s = ((y + g.top) * w + g.left) * 3;
      out.set(src.subarray(s, s + size * 3), y * size * 3);
    }
    return out;
  }
  const cv = needV ? precomputeCoeffs(h, g.resizedHeight) : null;
  // rows of the source that the kept output rows read
  let y0 = g.top;
  let y1 = g.top + size;
  if (cv) {
    y0 = cv.bounds[g.top * 2];
    y1 = 0;
    for (let yy = g.top; yy < g.top + size; yy++) y1 = Math.max(y1, cv.bounds[yy * 2] + cv.bounds[yy * 2 + 1]);
  }
  const rows = y1 - y0;
  // horizontal pass into tmp [rows, size, 3]
  let tmp: Uint8Array;
  if (needH) {
    const ch = precomputeCoeffs(w, g.resizedWidth);
    const { ksize, kk, bounds } = ch;
    tmp = needV ? new Uint8Array(rows * size * 3) : out;
    for (let y = 0; y < rows; y++) {
      const rowBase = (y + y0) * w * 3;
      let o = y * size * 3;
      for (let xx = g.left; xx < g.left + size; xx++) {
        const xmin = bounds[xx * 2];
        const xmax = bounds[xx * 2 + 1];
        const ko = xx * ksize;
        let s0 = HALF;
        let s1 = HALF;
        let s2 = HALF;
        let p = rowBase + xmin * 3;
        for (let x = 0; x < xmax; x++, p += 3) {
          const kv = kk[ko + x];
          s0 += src[p] * kv;
          s1 += src[p + 1] * kv;
          s2 += src[p + 2] * kv;
        }
        tmp[o++] = clip8(s0);
        tmp[o++] = clip8(s1);
        tmp[o++] = clip8(s2);
      }
    }
    if (!needV) return out;
  } else {
    tmp = new Uint8Array(rows * size * 3);
    for (let y = 0; y < rows; y++) {
      const s = ((y + y0) * w + g.left) * 3;
      tmp.set(src.subarray(s, s + size * 3), y * size * 3);
    }
  }
  // vertical pass
  const { ksize, kk, bounds } = cv!;
  const stride = size * 3;
  for (let yy = 0; yy < size; yy++) {
    const oy = yy + g.top;
    const ymin = bounds[oy * 2] - y0;
    const ymax = bounds[oy * 2 + 1];
    const ko = oy * ksize;
    let o = yy * stride;
    for (let xx = 0; xx < stride; xx += 3) {
      let s0 = HALF;
      let s1 = HALF;
      let s2 = HALF;
      let p = ymin * stride + xx;
      for (let y = 0; y < ymax; y++, p += stride) {
        const kv = kk[ko + y];
        s0 += tmp[p] * kv;
        s1 += tmp[p + 1] * kv;
        s2 += tmp[p + 2] * kv;
      }
      out[o++] = clip8(s0);
      out[o++] = clip8(s1);
      out[o++] = clip8(s2);
    }
  }
  return out;
}
