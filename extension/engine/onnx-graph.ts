// A minimal ONNX ModelProto encoder: just enough protobuf to build small compute graphs at run
// time (the scoring graph) and hand them to onnxruntime as an in-memory buffer. No protobuf
// package is available in node_modules (checked: none of protobufjs, google-protobuf, onnx-proto
// is installed, and onnxruntime-node does not ship a JS ONNX writer), so the wire format is
// written directly: varints, little-endian fixed32/fixed64 and length-delimited fields.
//
// Field numbers are those of onnx/onnx.proto (proto2). Repeated scalars are written unpacked,
// one tag per element, which is the proto2 canonical form (parsers accept both forms).

// ---------------------------------------------------------------------------------------------
// Wire format.

const WIRE_VARINT = 0;
const WIRE_FIXED64 = 1;
const WIRE_BYTES = 2;
const WIRE_FIXED32 = 5;

/** An append-only byte buffer with protobuf field writers. */
export class ProtoWriter {
  private buf: Uint8Array;
  private len = 0;

  constructor(initial = 256) {
    this.buf = new Uint8Array(initial);
  }

  private ensure(extra: number): void {
    if (this.len + extra <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.len + extra) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
  }

  /** Unsigned varint of a non-negative safe integer, or any int64 given as bigint (two's complement). */
  varint(value: number | bigint): this {
    let v: bigint;
    if (typeof value === 'bigint') {
      v = BigInt.asUintN(64, value);
    } else {
      if (!Number.isSafeInteger(value)) throw new RangeError(`varint: ${value} is not a safe integer`);
      if (value >= 0 && value < 0x80) {
        this.ensure(1);
        this.buf[this.len++] = value;
        return this;
      }
      v = BigInt.asUintN(64, BigInt(value));
    }
    this.ensure(10);
    do {
      let byte = Number(v & 0x7fn);
      v >>= 7n;
      if (v !== 0n) byte |= 0x80;
      this.buf[this.len++] = byte;
    } while (v !== 0n);
    return this;
  }

  private tag(field: number, wire: number): void {
    this.varint(field * 8 + wire);
  }

  /** int32/int64/enum/bool field (negative values as 10-byte two's complement, as protobuf does). */
  intField(field: number, value: number | bigint): this {
    this.tag(field, WIRE_VARINT);
    return this.varint(typeof value === 'number' && value < 0 ? BigInt(value) : value);
  }

  floatField(field: number, value: number): this {
    this.tag(field, WIRE_FIXED32);
    this.ensure(4);
    new DataView(this.buf.buffer, this.buf.byteOffset + this.len, 4).setFloat32(0, value, true);
    this.len += 4;
    return this;
  }

  doubleField(field: number, value: number): this {
    this.tag(field, WIRE_FIXED64);
    this.ensure(8);
    new DataView(this.buf.buffer, this.buf.byteOffset + this.len, 8).setFloat64(0, value, true);
    this.len += 8;
    return this;
  }

  bytesField(field: number, bytes: Uint8Array): this {
    this.tag(field, WIRE_BYTES);
    this.varint(bytes.length);
    this.ensure(bytes.length);
    this.buf.set(bytes, this.len);
    this.len += bytes.length;
    return this;
  }

  stringField(field: number, value: string): this {
    return this.bytesField(field, new TextEncoder().encode(value));
  }

  /** An embedded message, written by `body` into a fresh writer. */
  messageField(field: number, body: (w: ProtoWriter) => void): this {
    const inner = new ProtoWriter();
    body(inner);
    return this.bytesField(field, inner.finish());
  }

  finish(): Uint8Array {
    return this.buf.slice(0, this.len);
  }
}

// ---------------------------------------------------------------------------------------------
// The ONNX subset.

/** TensorProto.DataType values. */
export const DataType = {
  FLOAT: 1,
  UINT8: 2,
  INT8: 3,
  INT32: 6,
  INT64: 7,
  BOOL: 9,
  FLOAT16: 10,
  DOUBLE: 11,
} as const;
export type DataTypeValue = (typeof DataType)[keyof typeof DataType];

/** AttributeProto.AttributeType values. */
const AttrType = { FLOAT: 1, INT: 2, STRING: 3, TENSOR: 4, FLOATS: 6, INTS: 7 } as const;

/** A dimension: a fixed size or a symbolic name (e.g. 'N'). */
export type Dim = number | string;

export interface ValueInfo {
  name: string;
  elemType: DataTypeValue;
  /** Omit for an unknown shape (onnxruntime accepts that; onnx.checker wants graph inputs/outputs shaped). */
  shape?: readonly Dim[];
}

/** An attribute value; `{ ints }`/`{ floats }` force list types (also for one element). */
export type AttributeValue =
  | number // int if integral, else float; use { float } for an integral float
  | bigint
  | string
  | { float: number }
  | { ints: readonly (number | bigint)[] }
  | { floats: readonly number[] }
  | { tensor: TensorInit };

export interface NodeSpec {
  op: string;
  inputs: readonly string[];
  outputs: readonly string[];
  name?: string;
  /** Operator domain, '' (default) for ai.onnx, e.g. 'com.microsoft'. */
  domain?: string;
  attrs?: Record<string, AttributeValue>;
}

/** A constant tensor (initializer or Constant value). */
export interface TensorInit {
  name?: string;
  dims: readonly number[];
  elemType: DataTypeValue;
  /** Raw little-endian data (Float32Array, BigInt64Array, Int32Array, Int8Array, Uint8Array...). */
  data: ArrayBufferView;
}

export interface GraphSpec {
  name: string;
  nodes: readonly NodeSpec[];
  inputs: readonly ValueInfo[];
  outputs: readonly ValueInfo[];
  initializers?: readonly TensorInit[];
}

export interface ModelSpec {
  graph: GraphSpec;
  /** Default [{ domain: '', version: 17 }]. */
  opsets?: readonly { domain: string; version: number }[];
  /** Default 8 (the IR version of opset 17). */
  irVersion?: number;
  producerName?: string;
  producerVersion?: string;
}

export class OnnxGraphError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'OnnxGraphError';
  }
}

function writeTensor(w: ProtoWriter, t: TensorInit): void {
  const elements = t.dims.reduce((a, b) => a * b, 1);
  const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  const size = ELEM_SIZE[t.elemType];
  if (size !== undefined && bytes.length !== elements * size) {
    throw new OnnxGraphError(`tensor ${t.name ?? '(unnamed)'}: dims [${t.dims.join(', ')}] need ${elements * size} bytes, data has ${bytes.length}`);
  }
  for (const d of t.dims) w.intField(1, d); // dims
  w.intField(2, t.elemType); // data_type
  if (t.name) w.stringField(8, t.name);
  w.bytesField(9, littleEndian(bytes, size ?? 1)); // raw_data
}

const ELEM_SIZE: Partial<Record<number, number>> = { 1: 4, 2: 1, 3: 1, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8 };

/** raw_data is little-endian; typed arrays are host-endian (little on every supported platform). */
function littleEndian(bytes: Uint8Array, size: number): Uint8Array {
  if (size === 1 || new Uint8Array(new Uint16Array([1]).buffer)[0] === 1) return bytes;
  const out = new Uint8Array(bytes.length);
  for (let i = 0; i < bytes.length; i += size) for (let k = 0; k < size; k++) out[i + k] = bytes[i + size - 1 - k];
  return out;
}

function writeValueInfo(w: ProtoWriter, v: ValueInfo): void {
  w.stringField(1, v.name);
  w.messageField(2, (type) => {
    type.messageField(1, (tensor) => {
      tensor.intField(1, v.elemType);
      if (v.shape) {
        tensor.messageField(2, (shape) => {
          for (const d of v.shape!) {
            shape.messageField(1, (dim) => {
              if (typeof d === 'number') {
                if (!Number.isInteger(d) || d < 0) throw new OnnxGraphError(`${v.name}: dimension ${d} must be a non-negative integer or a name`);
                dim.intField(1, d);
              } else {
                dim.stringField(2, d);
              }
            });
          }
        });
      }
    });
  });
}

function writeAttribute(w: ProtoWriter, name: string, value: AttributeValue, where: string): void {
  w.stringField(1, name);
  if (typeof value === 'bigint' || (typeof value === 'number' && Number.isInteger(value))) {
    w.intField(3, value).intField(20, AttrType.INT);
  } else if (typeof value === 'number') {
    w.floatField(2, value).intField(20, AttrType.FLOAT);
  } else if (typeof value === 'string') {
    w.stringField(4, value).intField(20, AttrType.STRING);
  } else if ('float' in value) {
    w.floatField(2, value.float).intField(20, AttrType.FLOAT);
  } else if ('ints' in value) {
    for (const i of value.ints) w.intField(8, i);
    w.intField(20, AttrType.INTS);
  } else if ('floats' in value) {
    for (const f of value.floats) w.floatField(7, f);
    w.intField(20, AttrType.FLOATS);
  } else if ('tensor' in value) {
    w.messageField(5, (t) => writeTensor(t, value.tensor));
    w.intField(20, AttrType.TENSOR);
  } else {
    throw new OnnxGraphError(`${where}: attribute ${name} has an unsupported value`);
  }
}

function writeNode(w: ProtoWriter, n: NodeSpec, index: number): void {
  const where = `node ${n.name ?? index} (${n.op})`;
  for (const i of n.inputs) w.stringField(1, i); // '' = an omitted optional input
  for (const o of n.outputs) w.stringField(2, o);
  w.stringField(3, n.name ?? `${n.op}_${index}`);
  w.stringField(4, n.op);
  for (const [k, v] of Object.entries(n.attrs ?? {})) w.messageField(5, (a) => writeAttribute(a, k, v, where));
  if (n.domain) w.stringField(7, n.domain);
}

/** Checks that every node input is produced earlier (graphs must be topologically sorted). */
function checkGraph(g: GraphSpec): void {
  const known = new Set<string>(['']);
  for (const i of g.inputs) known.add(i.name);
  for (const t of g.initializers ?? []) {
    if (!t.name) throw new OnnxGraphError(`graph ${g.name}: initializers need a name`);
    known.add(t.name);
  }
  g.nodes.forEach((n, idx) => {
    for (const i of n.inputs) {
      if (!known.has(i)) throw new OnnxGraphError(`graph ${g.name}: node ${n.name ?? idx} (${n.op}) reads "${i}" before anything produces it`);
    }
    for (const o of n.outputs) {
      if (o && known.has(o)) throw new OnnxGraphError(`graph ${g.name}: "${o}" is produced twice`);
      known.add(o);
    }
  });
  for (const o of g.outputs) {
    if (!known.has(o.name)) throw new OnnxGraphError(`graph ${g.name}: output "${o.name}" is never produced`);
  }
}

/** Serialises a ModelProto. */
export function encodeModel(spec: ModelSpec): Uint8Array {
  const g = spec.graph;
  checkGraph(g);
  const w = new ProtoWriter(1024);
  w.intField(1, spec.irVersion ?? 8); // ir_version
  w.stringField(2, spec.producerName ?? 'clipn-lab');
  if (spec.producerVersion) w.stringField(3, spec.producerVersion);
  w.messageField(7, (gw) => {
    g.nodes.forEach((n, i) => gw.messageField(1, (nw) => writeNode(nw, n, i)));
    gw.stringField(2, g.name);
    for (const t of g.initializers ?? []) gw.messageField(5, (tw) => writeTensor(tw, t));
    for (const i of g.inputs) gw.messageField(11, (vw) => writeValueInfo(vw, i));
    for (const o of g.outputs) gw.messageField(12, (vw) => writeValueInfo(vw, o));
  });
  for (const o of spec.opsets ?? [{ domain: '', version: 17 }]) {
    w.messageField(8, (ow) => {
      if (o.domain) ow.stringField(1, o.domain);
      ow.intField(2, o.version);
    });
  }
  return w.finish();
}

// ---------------------------------------------------------------------------------------------
// A small builder so graphs read like code.

/** Accumulates nodes and constants with unique names. */
export class GraphBuilder {
  readonly nodes: NodeSpec[] = [];
  readonly initializers: TensorInit[] = [];
  private counter = 0;

  constructor(readonly name: string) {}

  private fresh(hint: string): string {
    return `${hint}_${this.counter++}`;
  }

  /** Adds a node; returns its output names (fresh ones unless given). */
  op(op: string, inputs: readonly string[], attrs?: Record<string, AttributeValue>, opts: { outputs?: readonly string[] | number; domain?: string } = {}): string[] {
    const outs = typeof opts.outputs === 'number' || opts.outputs === undefined
      ? Array.from({ length: typeof opts.outputs === 'number' ? opts.outputs : 1 }, () => this.fresh(op.toLowerCase()))
      : [...opts.outputs];
    this.nodes.push({ op, inputs, outputs: outs, attrs, domain: opts.domain, name: `${op}_${this.nodes.length}` });
    return outs;
  }

  /** One-output node. */
  op1(op: string, inputs: readonly string[], attrs?: Record<string, AttributeValue>, output?: string): string {
    return this.op(op, inputs, attrs, output ? { outputs: [output] } : {})[0];
  }

  /** An int64 initializer (axes, shapes, split sizes). */
  int64s(values: readonly number[], dims: readonly number[] = [values.length], hint = 'const'): string {
    const name = this.fresh(hint);
    this.initializers.push({ name, dims, elemType: DataType.INT64, data: BigInt64Array.from(values.map((v) => BigInt(v))) });
    return name;
  }

  /** A float32 initializer (a scalar when dims is []). */
  floats(values: ArrayLike<number>, dims: readonly number[] = [values.length], hint = 'const'): string {
    const name = this.fresh(hint);
    const data = values instanceof Float32Array ? values : Float32Array.from(values);
    this.initializers.push({ name, dims, elemType: DataType.FLOAT, data });
    return name;
  }

  build(inputs: readonly ValueInfo[], outputs: readonly ValueInfo[], opsets?: ModelSpec['opsets']): Uint8Array {
    return encodeModel({
      graph: { name: this.name, nodes: this.nodes, inputs, outputs, initializers: this.initializers },
      opsets,
    });
  }
}
