// Machine facts printed by every benchmark, so a figure is never separated from what made it.
import * as fs from 'node:fs';
import * as os from 'node:os';

export interface MachineFacts {
  cpu: string;
  logicalCpus: number;
  availableParallelism: number;
  /** Instruction-set extensions that decide which GEMM kernels run. */
  simd: string;
  memoryGiB: number;
  loadAverage: [number, number, number];
  node: string;
}

function cpuFlags(): string[] {
  try {
    const line = fs.readFileSync('/proc/cpuinfo', 'utf8').split('\n').find((l) => l.startsWith('flags'));
    return line ? line.split(':')[1].trim().split(/\s+/) : [];
  } catch {
    return []; // not Linux: no SIMD list
  }
}

/**
 * The fair OPENBLAS_CORETYPE for a PyTorch reference on this CPU: SkylakeX with AVX-512 (Debian's
 * OpenBLAS picks SSE3 kernels on such machines unless told), Haswell with AVX2 only (SkylakeX
 * kernels die with Illegal instruction there); `override` wins.
 */
export function openblasCoreType(override?: string): string {
  if (override) return override;
  const flags = cpuFlags();
  return flags.includes('avx512f') ? 'SkylakeX' : 'Haswell';
}

export function machineFacts(): MachineFacts {
  const flags = cpuFlags();
  const simd = ['avx2', 'fma', 'avx512f', 'avx512_vnni', 'avx_vnni', 'amx_int8'].filter((f) => flags.includes(f));
  const load = os.loadavg().map((x) => Math.round(x * 100) / 100) as [number, number, number];
  return {
    cpu: os.cpus()[0]?.model ?? 'unknown',
    logicalCpus: os.cpus().length,
    availableParallelism: os.availableParallelism(),
    simd: simd.join(' ') || 'unknown',
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    loadAverage: load,
    node: process.version,
  };
}

export function printMachine(): MachineFacts {
  const m = machineFacts();
  console.log(`machine: ${m.cpu}, ${m.logicalCpus} logical CPUs (availableParallelism ${m.availableParallelism}), ${m.simd}, ${m.memoryGiB} GiB, node ${m.node}`);
  console.log(`load average (1/5/15 min): ${m.loadAverage.join(' / ')}${m.loadAverage[0] > m.logicalCpus ? '  <- busy machine: figures are pessimistic and noisy' : ''}`);
  return m;
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export function spread(xs: readonly number[]): string {
  return `min ${Math.min(...xs).toFixed(3)}, max ${Math.max(...xs).toFixed(3)}, n ${xs.length}`;
}

/** Wall and CPU (user + system, all threads) seconds of an async step. */
export async function timed<T>(f: () => Promise<T> | T): Promise<{ value: T; wall: number; cpu: number }> {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const value = await f();
  const wall = (performance.now() - t0) / 1000;
  const c = process.cpuUsage(c0);
  return { value, wall, cpu: (c.user + c.system) / 1e6 };
}

/** --name value / --flag arguments. */
export function args(): Map<string, string> {
  const out = new Map<string, string>();
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) continue;
    const eq = a.indexOf('=');
    if (eq > 0) out.set(a.slice(2, eq), a.slice(eq + 1));
    else if (i + 1 < argv.length && !argv[i + 1].startsWith('--')) out.set(a.slice(2), argv[++i]);
    else out.set(a.slice(2), 'true');
  }
  return out;
}
