// GraphSession.run / runOutputs (backend.ts) on a two-output graph built here: the named outputs
// and only those, the first output by default, and an unknown output named in the error.
import { strict as assert } from 'node:assert';
import { after, before, test } from 'node:test';
import { OrtBackend } from '../../extension/engine/backend';
import type { GraphSession } from '../../extension/engine/backend';
import { DataType, GraphBuilder } from '../../extension/engine/onnx-graph';

let backend: OrtBackend;
let session: GraphSession;

before(async () => {
  const g = new GraphBuilder('two_outputs');
  g.op1('Add', ['x', g.floats([1], [], 'one')], {}, 'plus_one');
  g.op1('Mul', ['x', g.floats([3], [], 'three')], {}, 'times_three');
  const F = DataType.FLOAT;
  const model = g.build([{ name: 'x', elemType: F, shape: ['n'] }], [{ name: 'plus_one', elemType: F, shape: ['n'] }, { name: 'times_three', elemType: F, shape: ['n'] }]);
  backend = new OrtBackend({ executionProviders: ['cpu'] });
  session = await backend.sessionFromBuffer('two_outputs', model);
});

after(async () => {
  await backend?.dispose();
});

const x = { x: { type: 'float32' as const, data: Float32Array.from([0.5, -2, 4]), dims: [3] } };

test('runOutputs returns the named outputs, and only those', async () => {
  const both = await session.runOutputs(x, ['times_three', 'plus_one']);
  assert.deepEqual(Object.keys(both).sort(), ['plus_one', 'times_three']);
  assert.deepEqual([...both.plus_one.data], [1.5, -1, 5]);
  assert.deepEqual([...both.times_three.data], [1.5, -6, 12]);
  assert.deepEqual(both.times_three.dims, [3]);
  const one = await session.runOutputs(x, ['times_three']);
  assert.deepEqual(Object.keys(one), ['times_three']);
});

test('run returns the first output by default, or the one named', async () => {
  assert.deepEqual([...(await session.run(x)).data], [1.5, -1, 5]);
  assert.deepEqual([...(await session.run(x, 'times_three')).data], [1.5, -6, 12]);
});

test('an unknown output is an error naming it and the outputs there are', async () => {
  await assert.rejects(session.runOutputs(x, ['plus_one', 'sums']), /no output named "sums" \(has plus_one, times_three\)/);
  await assert.rejects(session.run(x, 'sums'), /no output named "sums"/);
});
