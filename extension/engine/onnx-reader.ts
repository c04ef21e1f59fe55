// A minimal ONNX ModelProto reader: the graph's nodes (op type, inputs, integer and float
// attributes) and its float32 initializers, for native-kv-tower.ts, which runs a text graph's
// weights outside onnxruntime. The counterpart of onnx-graph.ts's writer, for the same reason:
// no protobuf package is installed. Field numbers are onnx/onnx.proto's.

export interface OnnxNode {
  opType: string;
  inputs: string[];
  outputs: string[];
  /** Integer attributes (e.g. Gemm's transB) and float ones (alpha, beta). */
  ints: Map<string, number>;
  floats: Map<string, number>;
}

export interface OnnxTensor {
  dims: number[];
  data: Float32Array;
}

export interface OnnxGraph {
  nodes: OnnxNode[];
  /** Float32 initializers by name (other types are left out). */
  initializers: Map<string, OnnxTensor>;
}

const FLOAT = 1;
const text = new TextDecoder();

/** A protobuf message's fields, read in order. */
class Fields {
  private at: number;
  constructor(private readonly bytes: Uint8Array, from = 0, private readonly end = bytes.length) {
    this.at = from;
  }

  varint(): number {
    let value = 0;
    let scale = 1;
    for (;;) {
      if (this.at >= this.end) throw new Error('truncated varint');
      const byte = this.bytes[this.at++];
      value += (byte & 0x7f) * scale;
      if (byte < 0x80) return value;
      scale *= 128;
    }
  }

  done(): boolean {
    return this.at >= this.end;
  }

  /** The next field: [number, wire type], or undefined at the end. */
  next(): [number, number] | undefined {
    if (this.done()) return undefined;
    const key = this.varint();
    return [Math.floor(key / 8), key % 8];
  }

  bytesField(): Uint8Array {
    const length = this.varint();
    if (this.at + length > this.end) throw new Error('truncated field');
    const out = this.bytes.subarray(this.at, this.at + length);
    this.at += length;
    return out;
  }

  fixed32(): Uint8Array {
    const out = this.bytes.subarray(this.at, this.at + 4);
    this.at += 4;
    return out;
  }

  skip(wire: number): void {
    if (wire === 0) this.varint();
    else if (wire === 1) this.at += 8;
    else if (wire === 2) this.bytesField();
    else if (wire === 5) this.at += 4;
    else throw new Error(`unsupported wire type ${wire}`);
  }
}

function float32At(bytes: Uint8Array): number {
  return new DataView(bytes.buffer, bytes.byteOffset, 4).getFloat32(0, true);
}

function readAttribute(bytes: Uint8Array, node: OnnxNode): void {
  const f = new Fields(bytes);
  let name = '';
  let i: number | undefined;
  let fl: number | undefined;
  for (let field = f.next(); field; field = f.next()) {
    const [n, wire] = field;
    if (n === 1 && wire === 2) name = text.decode(f.bytesField());
    else if (n === 2 && wire === 5) fl = float32At(f.fixed32());
    else if (n === 3 && wire === 0) i = f.varint();
    else f.skip(wire);
  }
  if (i !== undefined) node.ints.set(name, i);
  if (fl !== undefined) node.floats.set(name, fl);
}

function readNode(bytes: Uint8Array): OnnxNode {
  const node: OnnxNode = { opType: '', inputs: [], outputs: [], ints: new Map(), floats: new Map() };
  const f = new Fields(bytes);
  for (let field = f.next(); field; field = f.next()) {
    const [n, wire] = field;
    if (n === 1 && wire === 2) node.inputs.push(text.decode(f.bytesField()));
    else if (n === 2 && wire === 2) node.outputs.push(text.decode(f.bytesField()));
    else if (n === 4 && wire === 2) node.opType = text.decode(f.bytesField());
    else if (n === 5 && wire === 2) readAttribute(f.bytesField(), node);
    else f.skip(wire);
  }
  return node;
}

function readTensor(bytes: Uint8Array): { name: string; type: number; tensor: OnnxTensor; external: boolean } {
  const f = new Fields(bytes);
  const dims: number[] = [];
  let name = '';
  let type = 0;
  let raw: Uint8Array | undefined;
  let external = false;
  const floats: number[] = [];
  for (let field = f.next(); field; field = f.next()) {
    const [n, wire] = field;
    if (n === 1 && wire === 0) dims.push(f.varint());
    else if (n === 1 && wire === 2) {
      const packed = new Fields(f.bytesField());
      while (!packed.done()) dims.push(packed.varint());
    } else if (n === 2 && wire === 0) type = f.varint();
    else if (n === 4 && wire === 2) {
      const packed = f.bytesField();
      for (let k = 0; k + 4 <= packed.length; k += 4) floats.push(float32At(packed.subarray(k, k + 4)));
    } else if (n === 4 && wire === 5) floats.push(float32At(f.fixed32()));
    else if (n === 8 && wire === 2) name = text.decode(f.bytesField());
    else if (n === 9 && wire === 2) raw = f.bytesField();
    else if (n === 14 && wire === 0) external = f.varint() === 1;
    else f.skip(wire);
  }
  let data: Float32Array;
  if (raw) {
    // Copied: raw_data need not be 4-byte aligned inside the file's buffer.
    data = new Float32Array(raw.length / 4);
    new Uint8Array(data.buffer).set(raw);
  } else data = Float32Array.from(floats);
  return { name, type, tensor: { dims, data }, external };
}

/** The graph of an ONNX model file's bytes. Throws on a malformed file or external weights. */
export function readOnnxGraph(bytes: Uint8Array): OnnxGraph {
  const model = new Fields(bytes);
  let graphBytes: Uint8Array | undefined;
  for (let field = model.next(); field; field = model.next()) {
    const [n, wire] = field;
    if (n === 7 && wire === 2) graphBytes = model.bytesField();
    else model.skip(wire);
  }
  if (!graphBytes) throw new Error('no graph in the model');
  const graph: OnnxGraph = { nodes: [], initializers: new Map() };
  const g = new Fields(graphBytes);
  for (let field = g.next(); field; field = g.next()) {
    const [n, wire] = field;
    if (n === 1 && wire === 2) graph.nodes.push(readNode(g.bytesField()));
    else if (n === 5 && wire === 2) {
      const t = readTensor(g.bytesField());
      if (t.external) throw new Error(`initializer ${t.name} is stored outside the file`);
      if (t.type === FLOAT) graph.initializers.set(t.name, t.tensor);
    } else g.skip(wire);
  }
  return graph;
}
