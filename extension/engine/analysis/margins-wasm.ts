// The inner loop of the exact CTW margins (variant-math.ts margins()) as a WebAssembly SIMD
// kernel: four image rows against four variants' class features at once, float64 lanes. About
// twice as fast as the JavaScript loop, and bit-identical to it: WebAssembly's f64x2.mul and
// f64x2.add round each lane as IEEE float64 mul and add do (no fused multiply-add), and every
// lane is one dot product summed in index order from +0, exactly as `s += x[t] * g[t]`.
// The module is a few hundred bytes, written here opcode by opcode; names are the WebAssembly
// text format's. Where the native kernels run (native-kernels.ts), their `dots` does the same
// arithmetic four lanes wide in the same memory, bit for bit (tests), and the module only
// provides that memory.

import { nativeKernels } from './native-kernels';
import type { NativeKernels } from './native-kernels';

/** The part of the WebAssembly JS API used here (the project's TypeScript lib has no WebAssembly types). */
interface WasmMemory { readonly buffer: ArrayBuffer; grow(pages: number): number }
interface WasmInstance { readonly exports: Record<string, unknown> }
declare const WebAssembly: { Module: new (bytes: Uint8Array) => object; Instance: new (module: object) => WasmInstance };

/** The kernel's view of its linear memory: where each table goes, for rows x d features. */
export interface MarginLayout { x: number; g: number; out: number }

const I32 = 0x7f;
const V128 = 0x7b;
const op = {
  block: 0x02, loop: 0x03, end: 0x0b, br: 0x0c, brIf: 0x0d, void: 0x40,
  localGet: 0x20, localSet: 0x21, i32Const: 0x41, i32Eqz: 0x45, i32Add: 0x6a, i32Sub: 0x6b, i32Mul: 0x6c, f64Load: 0x2b,
} as const;
/** SIMD instructions: the 0xfd prefix, then the opcode as LEB128. */
const simd = { v128Load: [0x00], v128Store: [0x0b], v128Const: [0x0c], f64x2Splat: [0x14], f64x2Add: [0xf0, 0x01], f64x2Mul: [0xf2, 0x01] } as const;

/** Unsigned LEB128 (lengths, counts, offsets). */
function leb(n: number): number[] {
  const out: number[] = [];
  do {
    let byte = n & 0x7f;
    n >>>= 7;
    if (n !== 0) byte |= 0x80;
    out.push(byte);
  } while (n !== 0);
  return out;
}

/** i32.const with its signed LEB128 operand (the constants here are small and non-negative). */
function i32(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const byte = n & 0x7f;
    n >>= 7;
    if (n === 0 && (byte & 0x40) === 0) return [op.i32Const, ...out, byte];
    out.push(byte | 0x80);
  }
}

/** A section or a vector: its byte length (or count), then its bytes. */
const sized = (bytes: number[]) => [...leb(bytes.length), ...bytes];
const section = (id: number, bytes: number[]) => [id, ...sized(bytes)];
const name = (s: string) => sized([...Buffer.from(s, 'utf8')]);

/**
 * dots(x, g, out, quads, d): for q < quads, rows 4q..4q+3 of x ([rows, d] float64 at byte x)
 * against g ([d][4] float64: four variants' features, interleaved) into out[16q + 4r + u].
 * `dim` (= d) is built into the loads' offsets, so the module is compiled per feature width.
 */
function kernelBody(dim: number): number[] {
  // Locals: params 0 x, 1 g, 2 out, 3 quads, 4 d; then i32 5 t (dims left), 6 row (x[t] of the
  // quad's first row), 7 gp (g[t]), 8 stride (bytes per row);
  // v128 9..16 accumulators (row r: 9 + 2r lanes u0 u1, 10 + 2r lanes u2 u3), 17..20 rows' x, 21 g01, 22 g23.
  const get = (i: number) => [op.localGet, i];
  const set = (i: number) => [op.localSet, i];
  const s = (o: readonly number[]) => [0xfd, ...o];
  const memarg = (offset: number) => [3, ...leb(offset)]; // align 2^3
  const body: number[] = [];
  body.push(...get(4), ...i32(8), op.i32Mul, ...set(8));
  body.push(op.block, op.void, op.loop, op.void);
  body.push(...get(3), op.i32Eqz, op.brIf, 1);
  for (let a = 9; a <= 16; a++) body.push(...s(simd.v128Const), ...new Array(16).fill(0), ...set(a));
  body.push(...get(0), ...set(6), ...get(1), ...set(7), ...get(4), ...set(5));
  body.push(op.loop, op.void);
  // x[row + r * d] splat into both lanes
  for (let r = 0; r < 4; r++) body.push(...get(6), op.f64Load, ...memarg(r * dim * 8), ...s(simd.f64x2Splat), ...set(17 + r));
  body.push(...get(7), ...s(simd.v128Load), ...memarg(0), ...set(21));
  body.push(...get(7), ...s(simd.v128Load), ...memarg(16), ...set(22));
  for (let r = 0; r < 4; r++) {
    for (let h = 0; h < 2; h++) {
      const acc = 9 + 2 * r + h;
      body.push(...get(acc), ...get(17 + r), ...get(21 + h), ...s(simd.f64x2Mul), ...s(simd.f64x2Add), ...set(acc));
    }
  }
  body.push(...get(6), ...i32(8), op.i32Add, ...set(6)); // next t
  body.push(...get(7), ...i32(32), op.i32Add, ...set(7));
  body.push(...get(5), ...i32(1), op.i32Sub, ...set(5), ...get(5), op.brIf, 0);
  body.push(op.end);
  for (let a = 0; a < 8; a++) body.push(...get(2), ...get(9 + a), ...s(simd.v128Store), ...memarg(16 * a));
  body.push(...get(2), ...i32(128), op.i32Add, ...set(2)); // 16 float64 out
  body.push(...get(0), ...get(8), ...i32(4), op.i32Mul, op.i32Add, ...set(0)); // four rows on
  body.push(...get(3), ...i32(1), op.i32Sub, ...set(3));
  body.push(op.br, 0, op.end, op.end, op.end);
  const locals = [2, 4, I32, 14, V128];
  return sized([...locals, ...body]);
}

function moduleBytes(dim: number): Uint8Array {
  const bytes = [
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, [1, 0x60, ...sized([I32, I32, I32, I32, I32]), 0]),
    ...section(3, [1, 0]),
    ...section(5, [1, 0x00, 1]),
    ...section(7, [2, ...name('memory'), 0x02, 0, ...name('dots'), 0x00, 0]),
    ...section(10, [1, ...kernelBody(dim)]),
  ];
  return Uint8Array.from(bytes);
}

const compiled = new Map<number, object | null>();

/** The compiled module, or null where this runtime lacks WebAssembly SIMD (the caller then stays in JavaScript). */
function marginModule(dim: number): object | null {
  if (!compiled.has(dim)) {
    try {
      compiled.set(dim, new WebAssembly.Module(moduleBytes(dim)));
    } catch {
      compiled.set(dim, null);
    }
  }
  return compiled.get(dim)!;
}

/** One instance with room for `rows` (+3 padding) rows of d float64 features. */
export class MarginKernel {
  readonly memory: WasmMemory;
  readonly dots: (x: number, g: number, out: number, quads: number, d: number) => void;

  private constructor(instance: WasmInstance, pages: number, readonly layout: MarginLayout, native: NativeKernels | null) {
    const memory = (this.memory = instance.exports.memory as WasmMemory);
    memory.grow(pages - memory.buffer.byteLength / 65536);
    this.dots = native ? (x, g, out, quads, d) => native.dots(memory.buffer, x, g, out, quads, d) : (instance.exports.dots as MarginKernel['dots']);
  }

  /**
   * Undefined where WebAssembly SIMD is missing or the tables do not fit its 32-bit memory.
   * `native`: the native kernels' dots where they run (default), null for the WebAssembly kernel's.
   */
  static create(rows: number, d: number, native: NativeKernels | null = nativeKernels() ?? null): MarginKernel | undefined {
    const mod = marginModule(d);
    const padded = rows + 3;
    const layout = { x: 0, g: padded * d * 8, out: padded * d * 8 + 4 * d * 8 };
    const pages = Math.ceil((layout.out + padded * 4 * 8) / 65536);
    if (!mod || pages > 32768) return undefined; // 2 GiB: the byte offsets stay positive i32s
    return new MarginKernel(new WebAssembly.Instance(mod), pages, layout, native);
  }
}
