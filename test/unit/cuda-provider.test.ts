// The npm-only route to onnxruntime's CUDA provider (cuda-provider.ts, `clipn.js cuda-provider`):
// package tarballs shaped like com.github.asus4.onnxruntime.linux-x64-gpu's, built here with tar
// (the real one is 179 MB: fetching it is checked by hand, see the issue notes), installed into a
// scratch folder; a provider of another onnxruntime release, a tarball without the libraries and
// an unknown onnxruntime-node version are refused with the file and the fix named.
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import { main } from '../../extension/cli/clipn';
import { CUDA_PROVIDER_FILES, CUDA_PROVIDER_PACKAGES, cudaProvider, missingLibraries, onnxruntimeNode } from '../../extension/engine/cuda-provider';

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'clipn-cuda-test-'));

/** A package tarball holding `files` (name -> content) under package/Plugins/Linux/x64. */
function tarball(name: string, files: Record<string, string>): string {
  const root = path.join(scratch, `${name}-src`);
  const dir = path.join(root, 'package', 'Plugins', 'Linux', 'x64');
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(root, 'package', 'package.json'), '{"name":"fake"}');
  for (const [f, content] of Object.entries(files)) fs.writeFileSync(path.join(dir, f), content);
  const out = path.join(scratch, `${name}.tgz`);
  const r = spawnSync('tar', ['-czf', out, '-C', root, 'package'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return out;
}

const providerFiles = (version: string): Record<string, string> => ({
  'libonnxruntime_providers_shared.so': 'shared library bytes',
  'libonnxruntime_providers_cuda.so': `\u007fELF ... onnxruntime ${version} ... cuda kernels`,
});

describe('CUDA provider from the npm registry', () => {
  after(() => fs.rmSync(scratch, { recursive: true, force: true }));

  test('installs both libraries from a package tarball, executable, byte for byte', () => {
    const tgz = tarball('good', providerFiles('1.29.0'));
    const dest = path.join(scratch, 'dest-good');
    const lines = cudaProvider({ from: tgz, dest, ortVersion: '1.29.0', env: { LD_LIBRARY_PATH: '' } });
    for (const f of CUDA_PROVIDER_FILES) {
      assert.equal(fs.readFileSync(path.join(dest, f), 'utf8'), providerFiles('1.29.0')[f], f);
      assert.ok(fs.statSync(path.join(dest, f)).mode & 0o100, `${f} executable`);
      assert.ok(lines.some((l) => l.startsWith(`installed ${f}`) && l.includes(dest)), lines.join('\n'));
    }
    // Nothing half-written is left beside the libraries.
    assert.deepEqual(fs.readdirSync(dest).sort(), [...CUDA_PROVIDER_FILES].sort());
  });

  test('the report lists the CUDA libraries the machine lacks, and finds them on LD_LIBRARY_PATH', () => {
    const needs = CUDA_PROVIDER_PACKAGES['1.29.0'].needs;
    const lib = path.join(scratch, 'cuda-lib');
    fs.mkdirSync(lib, { recursive: true });
    // On LD_LIBRARY_PATH: every one found (whatever the ldconfig cache holds).
    for (const n of needs) fs.writeFileSync(path.join(lib, n), '');
    assert.deepEqual(missingLibraries(needs, { LD_LIBRARY_PATH: `/nonexistent:${lib}` }), []);
    const dest = path.join(scratch, 'dest-check');
    fs.mkdirSync(dest, { recursive: true });
    const found = cudaProvider({ check: true, dest, ortVersion: '1.29.0', env: { LD_LIBRARY_PATH: lib } });
    assert.match(found.join('\n'), /provider libraries: libonnxruntime_providers_shared\.so, libonnxruntime_providers_cuda\.so missing from .*dest-check \(run clipn\.js cuda-provider\)/);
    assert.match(found.join('\n'), /CUDA libraries: libcublasLt\.so\.13, .* found/);
    // A library that exists nowhere is named, with where it comes from.
    const absent = 'libclipn-test-absent.so.99';
    assert.deepEqual(missingLibraries([absent, needs[0]], { LD_LIBRARY_PATH: lib }), [absent]);
    const nothing = cudaProvider({ check: true, dest, ortVersion: '1.29.0', env: { LD_LIBRARY_PATH: '' } });
    const missing = missingLibraries(needs, { LD_LIBRARY_PATH: '' });
    if (missing.length > 0) assert.match(nothing.join('\n'), new RegExp(`not found on this machine: ${missing.join(', ').replace(/\./g, '\\.')}\\. .*LD_LIBRARY_PATH`));
  });

  test('a provider built for another onnxruntime release is refused and nothing is installed', () => {
    const tgz = tarball('other-release', providerFiles('1.28.1'));
    const dest = path.join(scratch, 'dest-other');
    assert.throws(() => cudaProvider({ from: tgz, dest, ortVersion: '1.29.0' }), /other-release\.tgz: libonnxruntime_providers_cuda\.so was not built for onnxruntime 1\.29\.0/);
    assert.ok(!fs.existsSync(path.join(dest, 'libonnxruntime_providers_cuda.so')));
  });

  test('a tarball without the libraries, a missing file and an unknown onnxruntime-node version are errors naming the fix', () => {
    const empty = tarball('no-libs', { 'README.md': 'nothing here' });
    assert.throws(() => cudaProvider({ from: empty, dest: path.join(scratch, 'd1'), ortVersion: '1.29.0' }),
      /no-libs\.tgz is not a CUDA provider package for linux-x64 \(it holds no package\/Plugins\/Linux\/x64\/libonnxruntime_providers_shared\.so, .*cuda\.so\)/);
    assert.throws(() => cudaProvider({ from: path.join(scratch, 'absent.tgz'), dest: path.join(scratch, 'd2'), ortVersion: '1.29.0' }), /absent\.tgz: no such file/);
    assert.throws(() => cudaProvider({ dest: path.join(scratch, 'd3'), ortVersion: '9.9.9' }),
      /no CUDA provider package is known for onnxruntime-node 9\.9\.9 \(known: 1\.29\.0\); give --package NAME@VERSION/);
  });

  test('the pairing table covers the onnxruntime-node this project installs', () => {
    assert.ok(CUDA_PROVIDER_PACKAGES[onnxruntimeNode().version], `no CUDA provider package for onnxruntime-node ${onnxruntimeNode().version}`);
  });

  test('clipn.js cuda-provider installs from --from into --dest, and rejects --check with --from', async () => {
    const tgz = tarball('cli', providerFiles(onnxruntimeNode().version));
    const dest = path.join(scratch, 'dest-cli');
    const writes: string[] = [];
    const write = process.stdout.write.bind(process.stdout);
    process.stdout.write = ((chunk: string) => (writes.push(String(chunk)), true)) as typeof process.stdout.write;
    let code: number;
    try {
      code = await main(['cuda-provider', '--from', tgz, '--dest', dest]);
    } finally {
      process.stdout.write = write;
    }
    assert.equal(code, 0, writes.join(''));
    assert.match(writes.join(''), /installed libonnxruntime_providers_cuda\.so/);
    assert.ok(fs.existsSync(path.join(dest, 'libonnxruntime_providers_cuda.so')));
    const errors: string[] = [];
    const writeErr = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((chunk: string) => (errors.push(String(chunk)), true)) as typeof process.stderr.write;
    try {
      assert.equal(await main(['cuda-provider', '--check', '--from', tgz]), 2);
    } finally {
      process.stderr.write = writeErr;
    }
    assert.match(errors.join(''), /--check installs nothing/);
  });
});
