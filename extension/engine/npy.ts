// Reader/writer for NumPy's .npy format (versions 1.0, 2.0 and 3.0 headers), so embeddings and
// score arrays can be exchanged with the Python side and cached on disk without a converter.
// Format reference: numpy/lib/format.py. Only C-ordered, little-endian numeric arrays are
// supported; anything else is rejected loudly rather than misread.
import * as fs from 'node:fs';
import * as path from 'node:path';

export type NpyDtype = '<f4' | '<f2' | '<f8' | '<i8' | '<i4' | '|u1';

/** Float16 is widened to Float32 on read because JS has no half-precision array in Node 20. */
export type NpyData = Float32Array | Float64Array | BigInt64Array | Int32Array | Uint8Array;

export interface NpyArray {
  dtype: NpyDtype;
  shape: number[];
  data: NpyData;
}

export class NpyError extends Error {
  constructor(source: string, message: string) {
    super(`${source}: ${message}`);
    this.name = 'NpyError';
  }
}

const MAGIC = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]); // "\x93NUMPY"
// numpy pads headers so the data starts on a 64-byte boundary (allows memory mapping/SIMD).
const HEADER_ALIGN = 64;

const ITEM_SIZE: Record<NpyDtype, number> = {
  '<f4': 4, '<f2': 2, '<f8': 8, '<i8': 8, '<i4': 4, '|u1': 1,
};

/** numpy spells byte-order-free or native types several ways; fold them to our canonical names. */
function canonicalDtype(descr: string): NpyDtype | undefined {
  switch (descr) {
    case '<f4': case 'f4': case '<float32': return '<f4';
    case '<f2': case 'f2': return '<f2';
    case '<f8': case 'f8': return '<f8';
    case '<i8': case 'i8': return '<i8';
    case '<i4': case 'i4': return '<i4';
    case '|u1': case '<u1': case 'u1': case '=u1': return '|u1';
    default: return undefined;
  }
}

// Typed arrays use host byte order; every platform Node ships for is little-endian, and the
// format's '<' types are little-endian, so views can be taken without byte swapping.
const HOST_IS_LE = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

interface ParsedHeader {
  dtype: NpyDtype;
  shape: number[];
  dataOffset: number;
}

function parseHeader(buf: Buffer, source: string): ParsedHeader {
  if (buf.length < 10 || !buf.subarray(0, 6).equals(MAGIC)) {
    throw new NpyError(source, 'not a .npy file (bad magic string)');
  }
  const major = buf[6];
  let headerLen: number;
  let headerStart: number;
  if (major === 1) {
    headerLen = buf.readUInt16LE(8);
    headerStart = 10;
  } else if (major === 2 || major === 3) {
    if (buf.length < 12) throw new NpyError(source, 'truncated .npy header');
    headerLen = buf.readUInt32LE(8);
    headerStart = 12;
  } else {
    throw new NpyError(source, `unsupported .npy format version ${major}.${buf[7]}`);
  }
  const dataOffset = headerStart + headerLen;
  if (buf.length < dataOffset) {
    throw new NpyError(source, `truncated .npy header (needs ${dataOffset} bytes, file has ${buf.length})`);
  }
  // Version 3 allows UTF-8 (field names in structured dtypes); plain headers are ASCII anyway.
  const header = buf.toString(major === 3 ? 'utf8' : 'latin1', headerStart, dataOffset);

  const descrMatch = /['"]descr['"]\s*:\s*(['"])([^'"]*)\1/.exec(header);
  if (!descrMatch) {
    // A list-valued descr is a structured (record) dtype.
    throw new NpyError(source, `unsupported dtype in header ${header.trim()} (structured dtypes are not supported)`);
  }
  const descr = descrMatch[2];
  const dtype = canonicalDtype(descr);
  if (!dtype) {
    throw new NpyError(source, `unsupported dtype '${descr}' (supported: <f4, <f2, <f8, <i8, <i4, u1)`);
  }
  const fortranMatch = /['"]fortran_order['"]\s*:\s*(True|False)/.exec(header);
  if (!fortranMatch) throw new NpyError(source, `header lacks fortran_order: ${header.trim()}`);
  if (fortranMatch[1] === 'True') {
    throw new NpyError(source, 'Fortran-ordered arrays are not supported (save with np.ascontiguousarray)');
  }
  const shapeMatch = /['"]shape['"]\s*:\s*\(([^)]*)\)/.exec(header);
  if (!shapeMatch) throw new NpyError(source, `header lacks shape: ${header.trim()}`);
  const shape = shapeMatch[1]
    .split(',')
    .map((s) => s.trim().replace(/L$/, '')) // Python 2 wrote long ints as "3L"
    .filter((s) => s.length > 0)
    .map((s) => {
      const n = Number(s);
      if (!Number.isSafeInteger(n) || n < 0) throw new NpyError(source, `bad shape entry '${s}'`);
      return n;
    });
  return { dtype, shape, dataOffset };
}

// Half -> single lookup; built lazily because most sessions never read float16.
let halfTable: Float32Array | undefined;
function halfToFloatTable(): Float32Array {
  if (halfTable) return halfTable;
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const frac = h & 0x3ff;
    if (exp === 0) t[h] = sign * frac * 2 ** -24; // subnormal (and signed zero)
    else if (exp === 31) t[h] = frac ? NaN : sign * Infinity;
    else t[h] = sign * (1 + frac / 1024) * 2 ** (exp - 15);
  }
  halfTable = t;
  return t;
}

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** IEEE round-to-nearest-even float32 -> float16, matching numpy's astype(float16). */
function floatToHalf(value: number): number {
  f32Scratch[0] = value;
  const x = u32Scratch[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0); // inf / NaN
  const e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00; // overflow to inf
  if (e <= 0) {
    if (e < -10) return sign; // underflows to signed zero
    mant |= 0x800000; // restore the implicit bit, then shift into the subnormal range
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    const rem = mant & ((1 << shift) - 1);
    let h = mant >>> shift;
    if (rem > half || (rem === half && (h & 1))) h++;
    return sign | h;
  }
  const rem = mant & 0x1fff;
  let h = sign | (e << 10) | (mant >>> 13);
  // A carry out of the mantissa correctly bumps the exponent (up to inf).
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h++;
  return h;
}

function product(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/**
 * Reads a .npy file (path) or its bytes (Buffer). Throws NpyError naming the source on a bad
 * magic, unsupported dtype, Fortran order, or a body shorter than the header promises; the
 * embedding cache depends on that last check to detect half-written files. Bytes after the
 * data are ignored, as numpy.load does. When reading from a path the result may view the file
 * buffer directly; a caller-supplied Buffer is always copied so later mutations cannot leak in.
 */
export function readNpy(source: string | Buffer, label?: string): NpyArray {
  const fromPath = typeof source === 'string';
  const name = label ?? (fromPath ? source : '<buffer>');
  let buf: Buffer;
  if (fromPath) {
    try {
      buf = fs.readFileSync(source);
    } catch (e) {
      throw new NpyError(name, `cannot read: ${(e as Error).message}`);
    }
  } else {
    buf = source;
  }
  if (!HOST_IS_LE) throw new NpyError(name, 'big-endian hosts are not supported');
  const { dtype, shape, dataOffset } = parseHeader(buf, name);
  const count = product(shape);
  const itemSize = ITEM_SIZE[dtype];
  const needed = count * itemSize;
  const available = buf.length - dataOffset;
  if (available < needed) {
    throw new NpyError(
      name,
      `truncated data: header says shape (${shape.join(', ')}) of ${dtype} = ${needed} bytes, ` +
        `but only ${available} bytes follow the header`,
    );
  }
  const start = buf.byteOffset + dataOffset;
  const aligned = start % itemSize === 0;
  // Copy when the bytes are not aligned for a typed-array view, or when they belong to the caller.
  const bytes =
    aligned && fromPath
      ? { buffer: buf.buffer, offset: start }
      : { buffer: new Uint8Array(buf.subarray(dataOffset, dataOffset + needed)).buffer, offset: 0 };
  const ab = bytes.buffer as ArrayBuffer;
  let data: NpyData;
  switch (dtype) {
    case '<f4': data = new Float32Array(ab, bytes.offset, count); break;
    case '<f8': data = new Float64Array(ab, bytes.offset, count); break;
    case '<i8': data = new BigInt64Array(ab, bytes.offset, count); break;
    case '<i4': data = new Int32Array(ab, bytes.offset, count); break;
    case '|u1': data = new Uint8Array(ab, bytes.offset, count); break;
    case '<f2': {
      const halves = new Uint16Array(ab, bytes.offset, count);
      const table = halfToFloatTable();
      const out = new Float32Array(count);
      for (let i = 0; i < count; i++) out[i] = table[halves[i]];
      data = out;
      break;
    }
  }
  return { dtype, shape, data };
}

function dtypeOf(data: NpyData): NpyDtype {
  if (data instanceof Float32Array) return '<f4';
  if (data instanceof Float64Array) return '<f8';
  if (data instanceof BigInt64Array) return '<i8';
  if (data instanceof Int32Array) return '<i4';
  return '|u1';
}

/** Input to writeNpy: dtype defaults to the typed array's own; '<f2' narrows a Float32Array. */
export interface NpyWriteInput {
  shape: readonly number[];
  data: NpyData;
  dtype?: NpyDtype;
}

function encodeNpy(arr: NpyWriteInput, name: string): Buffer {
  const dtype = arr.dtype ?? dtypeOf(arr.data);
  const count = product(arr.shape);
  if (arr.shape.some((d) => !Number.isSafeInteger(d) || d < 0)) {
    throw new NpyError(name, `bad shape (${arr.shape.join(', ')})`);
  }
  if (count !== arr.data.length) {
    throw new NpyError(name, `shape (${arr.shape.join(', ')}) holds ${count} items but data has ${arr.data.length}`);
  }
  const natural = dtypeOf(arr.data);
  if (dtype !== natural && !(dtype === '<f2' && natural === '<f4')) {
    throw new NpyError(name, `cannot write ${arr.data.constructor.name} as ${dtype}`);
  }
  const shapeStr = arr.shape.length === 1 ? `(${arr.shape[0]},)` : `(${arr.shape.join(', ')})`;
  let dict = `{'descr': '${dtype}', 'fortran_order': False, 'shape': ${shapeStr}, }`;
  // Version 1.0 stores the header length in 16 bits; switch to 2.0 only when it cannot fit.
  let prefix = 10;
  let total = Math.ceil((prefix + dict.length + 1) / HEADER_ALIGN) * HEADER_ALIGN;
  if (total - prefix > 0xffff) {
    prefix = 12;
    total = Math.ceil((prefix + dict.length + 1) / HEADER_ALIGN) * HEADER_ALIGN;
  }
  dict = dict.padEnd(total - prefix - 1, ' ') + '\n';
  const itemSize = ITEM_SIZE[dtype];
  const out = Buffer.alloc(total + count * itemSize);
  MAGIC.copy(out, 0);
  out[6] = prefix === 10 ? 1 : 2;
  out[7] = 0;
  if (prefix === 10) out.writeUInt16LE(total - prefix, 8);
  else out.writeUInt32LE(total - prefix, 8);
  out.write(dict, prefix, 'latin1');
  if (dtype === '<f2') {
    const src = arr.data as Float32Array;
    for (let i = 0; i < count; i++) out.writeUInt16LE(floatToHalf(src[i]), total + 2 * i);
  } else {
    const d = arr.data;
    Buffer.from(d.buffer, d.byteOffset, d.byteLength).copy(out, total);
  }
  return out;
}

/**
 * writeNpy(array) returns the file bytes; writeNpy(path, array) writes them. File writes go
 * through a temporary sibling and a rename so a crash never leaves a partial file under the
 * final name (readers would otherwise have to rely on truncation detection alone).
 */
export function writeNpy(array: NpyWriteInput): Buffer;
export function writeNpy(file: string, array: NpyWriteInput): void;
export function writeNpy(a: string | NpyWriteInput, b?: NpyWriteInput): Buffer | void {
  if (typeof a !== 'string') return encodeNpy(a, '<buffer>');
  if (!b) throw new TypeError('writeNpy(path, array): array missing');
  const bytes = encodeNpy(b, a);
  const tmp = path.join(path.dirname(a), `.${path.basename(a)}.${process.pid}.${Date.now()}.tmp`);
  try {
    fs.writeFileSync(tmp, bytes);
    fs.renameSync(tmp, a);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw new NpyError(a, `cannot write: ${(e as Error).message}`);
  }
}
