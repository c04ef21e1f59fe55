// `clipn.js cuda-provider` (extension/cli/clipn.ts): onnxruntime's CUDA execution provider from the npm registry alone.
// onnxruntime-node's own install step fetches the provider from GitHub; machines that reach only
// the npm registry (and offline installs, ONNXRUNTIME_NODE_INSTALL=skip) have the CPU and WebGPU
// providers only. The npm package com.github.asus4.onnxruntime.linux-x64-gpu (MIT, Microsoft's
// binaries repackaged) carries the same provider libraries, built per onnxruntime release; they
// load only into the core of that release, so the package is chosen by the installed
// onnxruntime-node version. The libraries go beside onnxruntime-node's core (where it looks for
// providers); the CUDA libraries they link against must come from the machine (driver, CUDA 13).
//
//   clipn.js cuda-provider [--from FILE.tgz] [--dest DIR] [--package NAME@VERSION] [--check]
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

interface ProviderPackage {
  spec: string;
  /** The provider library's ELF NEEDED entries outside glibc/libstdc++ (read with objdump -p). */
  needs: string[];
}

/** onnxruntime-node version -> the npm package with its CUDA provider (checked by hand). */
export const CUDA_PROVIDER_PACKAGES: Readonly<Record<string, ProviderPackage>> = {
  '1.29.0': {
    spec: 'com.github.asus4.onnxruntime.linux-x64-gpu@0.4.9',
    needs: ['libcublasLt.so.13', 'libcublas.so.13', 'libcurand.so.10', 'libcudart.so.13', 'libcuda.so.1'],
  },
};
/** What the provider needs from the machine when the package is given by --package (unknown pairing). */
const DEFAULT_NEEDS = CUDA_PROVIDER_PACKAGES['1.29.0'].needs;
/** Where the package keeps the libraries. */
const IN_PACKAGE = 'package/Plugins/Linux/x64';
export const CUDA_PROVIDER_FILES = ['libonnxruntime_providers_shared.so', 'libonnxruntime_providers_cuda.so'] as const;

export interface CudaProviderOptions {
  /** A package tarball fetched elsewhere (npm pack on another machine); default: npm pack. */
  from?: string;
  /** Default: onnxruntime-node's linux/x64 binary folder. */
  dest?: string;
  /** NAME@VERSION instead of the known pairing. */
  packageSpec?: string;
  /** Only report what is there and what is missing. */
  check?: boolean;
  /** Default: the installed onnxruntime-node's. */
  ortVersion?: string;
  /** Default process.env (LD_LIBRARY_PATH). */
  env?: NodeJS.ProcessEnv;
}

/** onnxruntime-node's version and its binary folder for a platform (where its core loads providers from). */
export function onnxruntimeNode(platform: string = 'linux', arch: string = 'x64'): { version: string; binaryDir: string } {
  const pkg = require.resolve('onnxruntime-node/package.json');
  const version = (JSON.parse(fs.readFileSync(pkg, 'utf8')) as { version: string }).version;
  return { version, binaryDir: path.join(path.dirname(pkg), 'bin', 'napi-v6', platform, arch) };
}

/** The libraries of `names` that neither LD_LIBRARY_PATH's folders nor the ldconfig cache hold. */
export function missingLibraries(names: readonly string[], env: NodeJS.ProcessEnv = process.env): string[] {
  const dirs = (env.LD_LIBRARY_PATH ?? '').split(':').filter(Boolean);
  let cache = '';
  for (const ldconfig of ['ldconfig', '/sbin/ldconfig', '/usr/sbin/ldconfig']) {
    const r = spawnSync(ldconfig, ['-p'], { encoding: 'utf8' });
    if (r.status === 0) {
      cache = r.stdout;
      break;
    }
  }
  const cached = new Set(cache.split('\n').map((l) => l.trim().split(' ')[0]).filter(Boolean));
  return names.filter((n) => !cached.has(n) && !dirs.some((d) => fs.existsSync(path.join(d, n))));
}

function libraryHint(missing: readonly string[]): string {
  return `not found on this machine: ${missing.join(', ')}. The provider loads only with them: the NVIDIA driver gives ` +
    'libcuda.so.1; CUDA 13 gives the rest (its toolkit, or the pip wheels nvidia-cublas, nvidia-curand and ' +
    'nvidia-cuda-runtime for CUDA 13, as PyTorch installs them): put their lib folders on LD_LIBRARY_PATH before starting ' +
    'VS Code or clipn';
}

function fetchPackage(spec: string, into: string): string {
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  const r = spawnSync(npm, ['pack', spec, '--pack-destination', into, '--silent'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) {
    const why = r.error ? r.error.message : (r.stderr || r.stdout).trim().split('\n').pop();
    throw new Error(`cuda-provider: npm pack ${spec} failed (${why}); on a machine without npm, run it elsewhere and give the file with --from`);
  }
  const file = r.stdout.trim().split('\n').pop()!.trim();
  return path.join(into, file);
}

/** Unpacks the provider files from the package tarball into `into`; an error names any missing. */
function unpack(tarball: string, into: string): void {
  if (!fs.existsSync(tarball)) throw new Error(`cuda-provider: ${tarball}: no such file`);
  const members = CUDA_PROVIDER_FILES.map((f) => `${IN_PACKAGE}/${f}`);
  const r = spawnSync('tar', ['-xzf', tarball, '-C', into, ...members], { encoding: 'utf8' });
  const absent = members.filter((m) => !fs.existsSync(path.join(into, m)));
  if (absent.length > 0 || r.status !== 0) {
    const why = absent.length > 0 ? `it holds no ${absent.join(', ')}` : (r.error?.message ?? r.stderr.trim());
    throw new Error(`cuda-provider: ${tarball} is not a CUDA provider package for linux-x64 (${why})`);
  }
}

/** Installs (or with check, inspects) the CUDA provider; returns the report's lines. */
export function cudaProvider(o: CudaProviderOptions = {}): string[] {
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    throw new Error(`cuda-provider: the npm route covers linux-x64 only (this is ${process.platform}-${process.arch}); elsewhere onnxruntime-node's own install step provides GPU providers`);
  }
  const ort = o.ortVersion && o.dest ? { version: o.ortVersion, binaryDir: o.dest } : onnxruntimeNode();
  const version = o.ortVersion ?? ort.version;
  const dest = o.dest ?? ort.binaryDir;
  const known = CUDA_PROVIDER_PACKAGES[version];
  const needs = known?.needs ?? DEFAULT_NEEDS;
  const lines: string[] = [];
  if (o.check) {
    const absent = CUDA_PROVIDER_FILES.filter((f) => !fs.existsSync(path.join(dest, f)));
    lines.push(absent.length === 0 ? `provider libraries: present in ${dest}` : `provider libraries: ${absent.join(', ')} missing from ${dest} (run clipn.js cuda-provider)`);
  } else {
    const spec = o.packageSpec ?? known?.spec;
    if (!spec && !o.from) {
      throw new Error(`cuda-provider: no CUDA provider package is known for onnxruntime-node ${version} (known: ${Object.keys(CUDA_PROVIDER_PACKAGES).join(', ')}); give --package NAME@VERSION built for ${version}, or install onnxruntime-node on a machine that reaches GitHub`);
    }
    const work = fs.mkdtempSync(path.join(os.tmpdir(), 'clipn-cuda-'));
    try {
      const tarball = o.from ? path.resolve(o.from) : fetchPackage(spec!, work);
      unpack(tarball, work);
      fs.mkdirSync(dest, { recursive: true });
      for (const f of CUDA_PROVIDER_FILES) {
        const from = path.join(work, IN_PACKAGE, f);
        // The provider refuses a core of another release at load time with a vaguer message.
        if (f === 'libonnxruntime_providers_cuda.so' && !fs.readFileSync(from).includes(Buffer.from(version))) {
          throw new Error(`cuda-provider: ${path.basename(tarball)}: ${f} was not built for onnxruntime ${version} (the installed onnxruntime-node's)`);
        }
        // Copy then rename: a half-written library must never sit where the core loads it.
        const partial = path.join(dest, `.${f}.partial`);
        fs.copyFileSync(from, partial);
        fs.chmodSync(partial, 0o755);
        fs.renameSync(partial, path.join(dest, f));
        lines.push(`installed ${f} (${(fs.statSync(path.join(dest, f)).size / 2 ** 20).toFixed(1)} MiB) into ${dest}`);
      }
    } finally {
      fs.rmSync(work, { recursive: true, force: true });
    }
  }
  const missing = missingLibraries(needs, o.env);
  lines.push(missing.length === 0 ? `CUDA libraries: ${needs.join(', ')} found` : `CUDA libraries ${libraryHint(missing)}`);
  lines.push('the engine tries cuda first by default; each output names the provider that ran and why others were skipped');
  return lines;
}
