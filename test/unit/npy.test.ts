// The .npy codec is checked against numpy itself in both directions, because the embedding
// cache and the Python model code exchange arrays through it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { readNpy, writeNpy, NpyError, type NpyArray } from '../../extension/engine/npy';
import { runPythonJson } from './helpers/python';

function tempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'npy-test-'));
}

test('round trip of every supported dtype through a Buffer and a file', () => {
  const dir = tempDir();
  try {
    const cases: NpyArray[] = [
      { dtype: '<f4', shape: [2, 3], data: Float32Array.from([1.5, -2, 3.25, 0, -0, 1e-30]) },
      { dtype: '<f8', shape: [3], data: Float64Array.from([Math.PI, -1e300, 5e-324]) },
      { dtype: '<i8', shape: [2, 1], data: BigInt64Array.from([-(2n ** 62n), 7n]) },
      { dtype: '<i4', shape: [1, 2, 2], data: Int32Array.from([-2147483648, 2147483647, 0, 5]) },
      { dtype: '|u1', shape: [0], data: new Uint8Array(0) },
      { dtype: '<f8', shape: [], data: Float64Array.from([42]) },
    ];
    for (const c of cases) {
      const back = readNpy(writeNpy(c));
      assert.equal(back.dtype, c.dtype);
      assert.deepEqual(back.shape, c.shape);
      assert.deepEqual(Array.from(back.data as ArrayLike<number | bigint>), Array.from(c.data as ArrayLike<number | bigint>));
      const file = path.join(dir, `a${c.dtype.slice(1)}.npy`);
      writeNpy(file, c);
      assert.deepEqual(readNpy(file).data, c.data);
    }
    // float16 narrows on write and widens to Float32Array on read.
    const half = readNpy(writeNpy({ dtype: '<f2', shape: [4], data: Float32Array.from([1, -0.5, 65504, 1 / 3]) }));
    assert.equal(half.dtype, '<f2');
    assert.ok(half.data instanceof Float32Array);
    assert.deepEqual(Array.from(half.data).slice(0, 3), [1, -0.5, 65504]);
    assert.ok(Math.abs((half.data[3] as number) - 1 / 3) < 1e-3);
    // Headers are padded so data starts on a 64-byte boundary, as numpy does.
    assert.equal(writeNpy(cases[0]).length % 64, 24);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('files written by numpy read correctly, and numpy reads ours', () => {
  const dir = tempDir();
  try {
    const written = runPythonJson<Record<string, { shape: number[]; values: (number | string)[] }>>(
      `
import json, sys, numpy as np
d = json.load(sys.stdin)["dir"]
rng = np.random.default_rng(0)
arrays = {
  "f4": rng.standard_normal((3, 5)).astype(np.float32),
  "f2": (rng.standard_normal(17) * 100).astype(np.float16),
  "f8": rng.standard_normal((2, 2, 2)),
  "i8": rng.integers(-2**62, 2**62, size=6, dtype=np.int64),
  "i4": rng.integers(-2**31, 2**31 - 1, size=(2, 3), dtype=np.int32),
  "u1": rng.integers(0, 256, size=(4, 1), dtype=np.uint8),
  "scalar": np.array(2.5),
  "empty": np.zeros((0, 3), np.float32),
  "sliced": np.asfortranarray(rng.standard_normal((3, 4)).astype(np.float32))[::2].copy(order="C"),
}
import numpy.lib.format as fmt
with open(d + "/v2.npy", "wb") as f:
  fmt.write_array(f, arrays["f4"], version=(2, 0))
out = {}
for k, a in arrays.items():
  np.save(d + "/" + k + ".npy", a)
  vals = a.ravel().tolist()
  out[k] = {"shape": list(a.shape), "values": [str(v) for v in vals] if a.dtype == np.int64 else vals}
print(json.dumps(out))
`,
      { dir },
    );
    for (const [name, expected] of Object.entries(written)) {
      const arr = readNpy(path.join(dir, `${name}.npy`));
      assert.deepEqual(arr.shape, expected.shape, name);
      const got = Array.from(arr.data as ArrayLike<number | bigint>).map((v) => (typeof v === 'bigint' ? v.toString() : v));
      assert.deepEqual(got, expected.values, name);
    }
    const v2 = readNpy(path.join(dir, 'v2.npy'));
    assert.deepEqual(Array.from(v2.data as Float32Array), written.f4.values);

    // Now the other direction: numpy must load what we write, bit for bit.
    writeNpy(path.join(dir, 'ours_f4.npy'), { shape: [2, 2], data: Float32Array.from([0.1, -0.2, 3, 4]) });
    writeNpy(path.join(dir, 'ours_f8.npy'), { shape: [3], data: Float64Array.from([0.1, Math.E, -0]) });
    writeNpy(path.join(dir, 'ours_i8.npy'), { shape: [2], data: BigInt64Array.from([-5n, 2n ** 60n]) });
    writeNpy(path.join(dir, 'ours_i4.npy'), { shape: [1, 3], data: Int32Array.from([1, -2, 3]) });
    writeNpy(path.join(dir, 'ours_u1.npy'), { shape: [2], data: Uint8Array.from([0, 255]) });
    // float16 narrowing must round exactly like numpy, including subnormals, ties and overflow.
    const f2values = [0.1, 1e-6, 6e4, -3.5, 2049, 2051, 65519, 65520, 1e9, -1e-9, 5.96e-8, 2.98e-8, 2.99e-8, NaN];
    let seed = 12345;
    for (let i = 0; i < 3000; i++) {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      f2values.push((seed / 2147483648 - 0.5) * 2 ** ((i % 44) - 28));
    }
    writeNpy(path.join(dir, 'ours_f2.npy'), { dtype: '<f2', shape: [f2values.length], data: Float32Array.from(f2values) });
    const loaded = runPythonJson<Record<string, { dtype: string; shape: number[]; values: unknown[] }>>(
      `
import json, sys, numpy as np
inp = json.load(sys.stdin)
d = inp["dir"]
out = {}
for k in ["f4", "f8", "i8", "i4", "u1", "f2"]:
  a = np.load(d + "/ours_" + k + ".npy", allow_pickle=False)
  ref = None
  if k == "f2":
    ref = np.array(json.loads(inp["f2"]), np.float32).astype(np.float16)
    bad = np.nonzero(a.view(np.uint16) != ref.view(np.uint16))[0]
    assert len(bad) == 0, (bad[:5], a[bad[:5]], ref[bad[:5]])
    a = a[:5]
  out[k] = {"dtype": a.dtype.str, "shape": list(a.shape),
            "values": [str(v) for v in a.ravel().tolist()] if k == "i8" else a.ravel().tolist()}
print(json.dumps(out))
`,
      // NaN is not JSON: send the values as a Python-readable string.
      { dir, f2: JSON.stringify(f2values).replace(/null/g, 'NaN') },
    );
    assert.deepEqual(loaded.f4.shape, [2, 2]);
    assert.deepEqual(loaded.f4.values, Array.from(Float32Array.from([0.1, -0.2, 3, 4])));
    assert.equal(loaded.f8.dtype, '<f8');
    assert.deepEqual(loaded.f8.values, [0.1, Math.E, -0]);
    assert.deepEqual(loaded.i8.values, ['-5', (2n ** 60n).toString()]);
    assert.deepEqual(loaded.i4.shape, [1, 3]);
    assert.equal(loaded.u1.dtype, '|u1');
    assert.deepEqual(loaded.u1.values, [0, 255]);
    assert.equal(loaded.f2.dtype, '<f2');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('errors name the file: truncated body, bad magic, unsupported dtype, Fortran order', () => {
  const dir = tempDir();
  try {
    const file = path.join(dir, 'cache.npy');
    writeNpy(file, { shape: [100, 4], data: new Float32Array(400) });
    const full = fs.readFileSync(file);
    fs.writeFileSync(file, full.subarray(0, full.length - 3));
    assert.throws(() => readNpy(file), (e: unknown) => {
      assert.ok(e instanceof NpyError);
      assert.match(e.message, /cache\.npy/);
      assert.match(e.message, /truncated/);
      assert.match(e.message, /1600 bytes/);
      return true;
    });
    fs.writeFileSync(file, full.subarray(0, 40)); // cut inside the header
    assert.throws(() => readNpy(file), /cache\.npy.*truncated/);

    const bad = path.join(dir, 'bad.npy');
    fs.writeFileSync(bad, Buffer.from('PK\x03\x04 this is a zip'));
    assert.throws(() => readNpy(bad), /bad\.npy.*magic/);

    const header = (dict: string): Buffer => {
      const body = dict.padEnd(117, ' ') + '\n';
      return Buffer.concat([Buffer.from([0x93]), Buffer.from('NUMPY\x01\x00', 'latin1'), Buffer.from([118, 0]), Buffer.from(body, 'latin1'), Buffer.alloc(64)]);
    };
    assert.throws(
      () => readNpy(header("{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }"), 'be.npy'),
      /be\.npy.*unsupported dtype '>f4'/,
    );
    assert.throws(
      () => readNpy(header("{'descr': '<c8', 'fortran_order': False, 'shape': (2,), }"), 'c.npy'),
      /c\.npy.*unsupported dtype/,
    );
    assert.throws(
      () => readNpy(header("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }"), 'f.npy'),
      /f\.npy.*Fortran/,
    );
    assert.throws(() => readNpy(path.join(dir, 'missing.npy')), /missing\.npy.*cannot read/);
    assert.throws(() => writeNpy({ shape: [3], data: new Float32Array(2) }), /holds 3 items/);
    // The atomic write leaves no temporary files behind.
    assert.deepEqual(fs.readdirSync(dir).filter((f) => f.endsWith('.tmp')), []);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
