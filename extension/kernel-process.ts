// The extension host's handle on the kernel child process: fork, typed requests over IPC,
// replies matched by requestId, and what happens when the process dies (every pending request
// settles with a KernelDied outcome naming the exit code or signal). No `vscode` import: the
// extension wires it to the UI, tests can drive it directly.
import { fork, type ChildProcess } from 'node:child_process';
import type { FromKernel, KernelSettings, RunError, RunResult, ToKernel } from './protocol';
import { isFromKernel } from './protocol';

export interface KernelDied {
  type: 'died';
  requestId: number;
  message: string;
}

export type RunOutcome = RunResult | RunError | KernelDied;

export interface RunProgress {
  message: string;
  done?: number;
  total?: number;
}

interface Pending {
  resolve: (o: RunOutcome) => void;
  onProgress?: (p: RunProgress) => void;
}

/** How the process ended, in words for a cell's error output. */
export function describeExit(code: number | null, signal: NodeJS.Signals | null): string {
  if (signal === 'SIGKILL') return 'was killed (SIGKILL: out of memory, or killed by hand)';
  if (signal === 'SIGSEGV' || signal === 'SIGABRT' || signal === 'SIGBUS') return `crashed (${signal}: a native crash, e.g. in onnxruntime or an image decoder)`;
  if (signal) return `was stopped by ${signal}`;
  if (code === 134) return 'aborted (exit code 134: a native crash or out of memory)';
  return `exited with code ${code}`;
}

export class KernelProcess {
  private readonly child: ChildProcess;
  private readonly pending = new Map<number, Pending>();
  private exited = false;
  private nextId = 1;
  readonly ready: Promise<number>;
  /** Set once the process has ended: why. */
  exitReason?: string;
  private readonly exitListeners: Array<(reason: string) => void> = [];

  constructor(entry: string, private readonly log: (line: string) => void = () => undefined) {
    this.child = fork(entry, [], {
      // 'advanced' serialization sends Uint8Arrays (packed views) as bytes, not JSON lists.
      serialization: 'advanced',
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      // No inherited --inspect ports; ELECTRON_RUN_AS_NODE makes a desktop VS Code's Electron a plain Node.
      execArgv: [],
      env: { ...process.env, ELECTRON_RUN_AS_NODE: '1' },
    });
    this.child.stdout?.on('data', (d: Buffer) => this.log(d.toString().trimEnd()));
    this.child.stderr?.on('data', (d: Buffer) => this.log(d.toString().trimEnd()));
    this.ready = new Promise<number>((resolve, reject) => {
      const onReady = (m: unknown) => {
        if (isFromKernel(m) && m.type === 'ready') {
          this.child.off('message', onReady);
          resolve(m.pid);
        }
      };
      this.child.on('message', onReady);
      this.child.once('exit', () => reject(new Error(`the kernel process ${this.exitReason ?? 'ended'} before it was ready`)));
      this.child.once('error', (err) => reject(err));
    });
    this.ready.catch(() => undefined);
    this.child.on('message', (m: unknown) => this.onMessage(m));
    this.child.on('error', (err) => this.log(`kernel process error: ${err.message}`));
    this.child.on('exit', (code, signal) => this.onExit(code, signal));
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get alive(): boolean {
    return !this.exited;
  }

  /** True while a request has no reply yet. */
  isPending(requestId: number): boolean {
    return this.pending.has(requestId);
  }

  onDidExit(listener: (reason: string) => void): void {
    this.exitListeners.push(listener);
  }

  private onMessage(m: unknown): void {
    if (!isFromKernel(m)) return;
    const msg: FromKernel = m;
    if (msg.type === 'log') return this.log(msg.message);
    if (msg.type === 'ready') return;
    const p = this.pending.get(msg.requestId);
    if (!p) return;
    if (msg.type === 'progress') return p.onProgress?.({ message: msg.message, done: msg.done, total: msg.total });
    this.pending.delete(msg.requestId);
    if (msg.type === 'cacheCleared') p.resolve({ type: 'result', requestId: msg.requestId, view: new Uint8Array(0), text: `removed ${msg.removed}`, defined: [] });
    else p.resolve(msg);
  }

  private onExit(code: number | null, signal: NodeJS.Signals | null): void {
    this.exited = true;
    this.exitReason = describeExit(code, signal);
    this.log(`kernel process ${this.child.pid} ${this.exitReason}`);
    for (const [requestId, p] of this.pending) {
      p.resolve({ type: 'died', requestId, message: `The CLIPN kernel process ${this.exitReason} while running this cell.` });
    }
    this.pending.clear();
    for (const l of this.exitListeners) l(this.exitReason);
  }

  private send(msg: ToKernel): boolean {
    if (this.exited || !this.child.connected) return false;
    this.child.send(msg);
    return true;
  }

  /** Runs a cell; resolves with the result, the kernel's error, or the process's death. */
  run(source: string, baseDir: string, cellNumber: number, settings: KernelSettings, onProgress?: (p: RunProgress) => void): { requestId: number; outcome: Promise<RunOutcome> } {
    const requestId = this.nextId++;
    const outcome = new Promise<RunOutcome>((resolve) => {
      this.pending.set(requestId, { resolve, onProgress });
      if (!this.send({ type: 'run', requestId, source, baseDir, cellNumber, settings })) {
        this.pending.delete(requestId);
        resolve({ type: 'died', requestId, message: `The CLIPN kernel process ${this.exitReason ?? 'is not running'}.` });
      }
    });
    return { requestId, outcome };
  }

  clearCache(cacheFolder: string): Promise<RunOutcome> {
    const requestId = this.nextId++;
    return new Promise<RunOutcome>((resolve) => {
      this.pending.set(requestId, { resolve });
      if (!this.send({ type: 'clearCache', requestId, cacheFolder })) {
        this.pending.delete(requestId);
        resolve({ type: 'died', requestId, message: 'the kernel is not running' });
      }
    });
  }

  cancel(requestId: number): void {
    this.send({ type: 'cancel', requestId });
  }

  /** Ends the process now (interrupt that was not honoured in time, restart, dispose). */
  kill(): void {
    if (!this.exited) this.child.kill('SIGKILL');
  }

  /** Asks the kernel to release its sessions and exit; kills it if it has not after `ms`. */
  async shutdown(ms = 2000): Promise<void> {
    if (this.exited) return;
    const ended = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.send({ type: 'shutdown' });
    const timer = setTimeout(() => this.kill(), ms);
    await ended;
    clearTimeout(timer);
  }
}
