// The packed binary form of a payload: numeric arrays travel as raw little-endian bytes, not as
// JSON number lists (10x smaller for figures, and no float->text->float drift). Layout:
//   "CLPN" | u32 LE header length | header JSON (UTF-8) | zero padding to 8 | array bytes...
// The header is the payload with each typed array replaced by {"$a": index} plus an array
// table [{dtype, offset, length}]. Plain browser/Node APIs only: both sides import it.
import type { NumericArray } from './index';

const MAGIC = [0x43, 0x4c, 0x50, 0x4e]; // "CLPN"

type DType = 'f32' | 'f64' | 'i32' | 'u8';

interface ArrayEntry {
  dtype: DType;
  /** Byte offset from the start of the array area. */
  offset: number;
  /** Element count. */
  length: number;
}

export class PayloadError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PayloadError';
  }
}

function dtypeOf(value: unknown): DType | undefined {
  if (value instanceof Float32Array) return 'f32';
  if (value instanceof Float64Array) return 'f64';
  if (value instanceof Int32Array) return 'i32';
  if (value instanceof Uint8Array) return 'u8';
  return undefined;
}

const BYTES: Record<DType, number> = { f32: 4, f64: 8, i32: 4, u8: 1 };

const align8 = (n: number) => (n + 7) & ~7;

/** Packs a JSON-like value whose leaves may be typed arrays. */
export function packPayload(value: unknown): Uint8Array {
  const arrays: NumericArray[] = [];
  const table: ArrayEntry[] = [];
  let offset = 0;
  const header = JSON.stringify(value, function (this: unknown, _key, v: unknown) {
    const dtype = dtypeOf(v);
    if (!dtype) return v;
    const arr = v as NumericArray;
    table.push({ dtype, offset, length: arr.length });
    arrays.push(arr);
    offset = align8(offset + arr.byteLength);
    return { $a: arrays.length - 1 };
  });
  const json = new TextEncoder().encode(JSON.stringify({ payload: JSON.parse(header), arrays: table }));
  const start = align8(8 + json.length);
  const out = new Uint8Array(start + offset);
  out.set(MAGIC, 0);
  new DataView(out.buffer).setUint32(4, json.length, true);
  out.set(json, 8);
  arrays.forEach((arr, i) => {
    out.set(new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength), start + table[i].offset);
  });
  return out;
}

function makeArray(bytes: Uint8Array, entry: ArrayEntry): NumericArray {
  const size = BYTES[entry.dtype];
  if (!Number.isInteger(entry.length) || entry.length < 0 || entry.offset < 0 || entry.offset + entry.length * size > bytes.length) {
    throw new PayloadError(`packed array (${entry.dtype} x ${entry.length} at ${entry.offset}) runs past the end of the payload`);
  }
  // Copy: the source view may be unaligned for 4/8-byte types, and a copy detaches the result
  // from the notebook's buffer.
  // (An explicit copy: Node's Buffer#slice returns a view into its shared pool.)
  const copy = new Uint8Array(entry.length * size);
  copy.set(bytes.subarray(entry.offset, entry.offset + entry.length * size));
  const raw = copy.buffer;
  switch (entry.dtype) {
    case 'f32':
      return new Float32Array(raw);
    case 'f64':
      return new Float64Array(raw);
    case 'i32':
      return new Int32Array(raw);
    case 'u8':
      return new Uint8Array(raw);
  }
}

/** Unpacks what packPayload wrote; throws PayloadError on anything else. */
export function unpackPayload<T = unknown>(data: Uint8Array): T {
  if (data.length < 8 || MAGIC.some((b, i) => data[i] !== b)) {
    throw new PayloadError('not a CLIPN payload (bad magic); the output was written by something else or is damaged');
  }
  const headerLength = new DataView(data.buffer, data.byteOffset, data.byteLength).getUint32(4, true);
  if (8 + headerLength > data.length) throw new PayloadError('CLIPN payload header is truncated');
  let header: { payload: unknown; arrays: ArrayEntry[] };
  try {
    header = JSON.parse(new TextDecoder().decode(data.subarray(8, 8 + headerLength)));
  } catch (err) {
    throw new PayloadError(`CLIPN payload header is not JSON: ${(err as Error).message}`);
  }
  if (!header || !Array.isArray(header.arrays)) throw new PayloadError('CLIPN payload header has no array table');
  const area = data.subarray(align8(8 + headerLength));
  const arrays = header.arrays.map((entry) => {
    if (!entry || !(entry.dtype in BYTES)) throw new PayloadError(`unknown packed array type ${JSON.stringify(entry?.dtype)}`);
    return makeArray(area, entry);
  });
  const revive = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(revive);
    if (v && typeof v === 'object') {
      const obj = v as Record<string, unknown>;
      const keys = Object.keys(obj);
      if (keys.length === 1 && keys[0] === '$a' && typeof obj.$a === 'number') {
        const arr = arrays[obj.$a];
        if (!arr) throw new PayloadError(`packed array ${obj.$a} is not in the table`);
        return arr;
      }
      const out: Record<string, unknown> = {};
      for (const k of keys) out[k] = revive(obj[k]);
      return out;
    }
    return v;
  };
  return revive(header.payload) as T;
}
