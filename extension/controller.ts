// The notebook controller: cells run one after another through the kernel child process, with
// execution order, timing, progress (a live output line and the status bar), cancellation that
// ends the current cell within a second (the process is killed if it has not stopped by then),
// and a fresh process after any death. Nothing executes in an untrusted workspace: VS Code asks
// for trust before it calls a kernel (declined: the execute handler is never called), so the
// controller says why up front (kernel picker detail, a one-time warning) and still refuses in
// the execute handler should it be reached anyway.
import * as path from 'node:path';
import * as vscode from 'vscode';
import { CONTROLLER_ID, LANGUAGE_ID, MIME, NOTEBOOK_TYPE } from './protocol';
import { KernelProcess, type RunOutcome } from './kernel-process';
import { readSettings } from './settings';

/** How long a cancelled cell may take to stop before its kernel is killed. */
export const INTERRUPT_GRACE_MS = 700;
const PROGRESS_INTERVAL_MS = 150;

/** Why nothing runs in Restricted Mode: the cell error, the warning and (shortened) the kernel picker. */
export const UNTRUSTED_MESSAGE = 'This workspace is not trusted (Restricted Mode), so CLIPN Lab runs nothing in it. Trust the workspace (Manage Workspace Trust) to run cells.';
export const UNTRUSTED_DETAIL = 'Restricted Mode: cells do not run until the workspace is trusted';

export class ClipnController implements vscode.Disposable {
  readonly controller: vscode.NotebookController;
  private kernel?: KernelProcess;
  private order = 0;
  private queue: Promise<void> = Promise.resolve();
  private readonly status: vscode.StatusBarItem;
  private readonly trustListener: vscode.Disposable;
  private untrustedNoticeShown = false;
  /** Events for tests and the status bar: the kernel pid of each start. */
  readonly onDidStartKernel = new vscode.EventEmitter<number>();

  constructor(private readonly context: vscode.ExtensionContext, private readonly log: vscode.OutputChannel) {
    this.controller = vscode.notebooks.createNotebookController(CONTROLLER_ID, NOTEBOOK_TYPE, 'CLIPN kernel');
    this.controller.supportedLanguages = [LANGUAGE_ID];
    this.controller.supportsExecutionOrder = true;
    this.controller.description = 'onnxruntime in a separate process';
    this.controller.executeHandler = (cells, notebook) => this.execute(cells, notebook);
    this.status = vscode.window.createStatusBarItem('clipn.kernel', vscode.StatusBarAlignment.Left, 100);
    this.status.name = 'CLIPN kernel';
    this.status.command = 'clipn.restartKernel';
    this.trustListener = vscode.workspace.onDidGrantWorkspaceTrust(() => {
      this.controller.detail = undefined;
      this.log.appendLine('workspace trusted: cells can run');
    });
    if (!vscode.workspace.isTrusted) this.explainUntrusted();
  }

  /** Restricted Mode: say so in the kernel picker, the log and (once a session) a warning. */
  private explainUntrusted(): void {
    this.controller.detail = UNTRUSTED_DETAIL;
    this.log.appendLine(UNTRUSTED_MESSAGE);
    if (this.untrustedNoticeShown) return;
    this.untrustedNoticeShown = true;
    void vscode.window.showWarningMessage(UNTRUSTED_MESSAGE, 'Manage Workspace Trust').then((choice) => {
      if (choice) void vscode.commands.executeCommand('workbench.trust.manage');
    });
  }

  /** The running kernel's process id (undefined when none is running). */
  get kernelPid(): number | undefined {
    return this.kernel?.alive ? this.kernel.pid : undefined;
  }

  private ensureKernel(): KernelProcess {
    if (this.kernel?.alive) return this.kernel;
    // `kernel/main.js` beside this code: dist/extension/ in the bundle (scripts/build-extension.mjs
    // mirrors the out/ layout), out/extension/ when the tests load tsc's output.
    const entry = path.join(__dirname, 'kernel', 'main.js');
    const k = new KernelProcess(entry, (line) => this.log.appendLine(line));
    this.kernel = k;
    // A new process has no definitions: numbering starts over, as in Jupyter.
    this.order = 0;
    k.onDidExit((reason) => {
      if (this.kernel === k) this.showStatus(`$(debug-disconnect) CLIPN kernel ${reason.split(' (')[0]}`, 5000);
    });
    if (k.pid !== undefined) this.onDidStartKernel.fire(k.pid);
    this.log.appendLine(`kernel process ${k.pid} started`);
    return k;
  }

  private execute(cells: vscode.NotebookCell[], notebook: vscode.NotebookDocument): Promise<void> {
    // Executions are created now so every cell shows as queued; they run in order below.
    const executions = cells.map((cell) => this.controller.createNotebookCellExecution(cell));
    const run = async () => {
      for (let i = 0; i < executions.length; i++) {
        const ok = await this.runCell(executions[i], notebook);
        if (!ok) {
          // Like Jupyter's "run all": a failure stops the cells queued after it.
          for (const rest of executions.slice(i + 1)) {
            rest.start();
            rest.end(undefined);
          }
          return;
        }
      }
    };
    this.queue = this.queue.then(run, run);
    return this.queue;
  }

  private async runCell(exec: vscode.NotebookCellExecution, notebook: vscode.NotebookDocument): Promise<boolean> {
    const cell = exec.cell;
    if (exec.token.isCancellationRequested) {
      exec.start();
      exec.end(undefined);
      return false;
    }
    exec.start(Date.now());
    await exec.clearOutput();
    if (!vscode.workspace.isTrusted) {
      this.explainUntrusted();
      await this.fail(exec, 'UntrustedWorkspace', UNTRUSTED_MESSAGE);
      return false;
    }
    const source = cell.document.getText();
    const kernel = this.ensureKernel();
    exec.executionOrder = ++this.order;
    const settings = readSettings(this.context, notebook.uri);
    const baseDir = notebook.uri.scheme === 'file' ? path.dirname(notebook.uri.fsPath) : settings.cacheFolder;
    const progressOutput = new vscode.NotebookCellOutput([vscode.NotebookCellOutputItem.text('Starting…', MIME.text)]);
    await exec.replaceOutput(progressOutput);
    let lastProgress = 0;
    const { requestId, outcome } = kernel.run(source, baseDir, cell.index + 1, settings, (p) => {
      const now = Date.now();
      if (now - lastProgress < PROGRESS_INTERVAL_MS) return;
      lastProgress = now;
      const frac = p.total ? ` (${Math.round((100 * (p.done ?? 0)) / p.total)}%)` : '';
      void exec.replaceOutputItems(vscode.NotebookCellOutputItem.text(`${p.message}${frac}`, MIME.text), progressOutput);
      this.showStatus(`$(sync~spin) CLIPN cell ${cell.index + 1}: ${p.message}${frac}`);
    });
    this.showStatus(`$(sync~spin) CLIPN cell ${cell.index + 1}`);
    // Cancel: ask the kernel, and kill it if the cell has not stopped within the grace period.
    let killedForInterrupt = false;
    const cancel = exec.token.onCancellationRequested(() => {
      kernel.cancel(requestId);
      setTimeout(() => {
        if (kernel.alive && kernel.isPending(requestId)) {
          killedForInterrupt = true;
          kernel.kill();
        }
      }, INTERRUPT_GRACE_MS);
    });
    let result: RunOutcome;
    try {
      result = await outcome;
    } finally {
      cancel.dispose();
      this.status.hide();
    }
    return this.finish(exec, result, killedForInterrupt);
  }

  private async finish(exec: vscode.NotebookCellExecution, result: RunOutcome, killedForInterrupt: boolean): Promise<boolean> {
    if (result.type === 'result') {
      await exec.replaceOutput(
        new vscode.NotebookCellOutput([new vscode.NotebookCellOutputItem(result.view, MIME.view), vscode.NotebookCellOutputItem.text(result.text, MIME.text)]),
      );
      exec.end(true, Date.now());
      return true;
    }
    if (result.type === 'died') {
      if (killedForInterrupt) {
        await this.fail(exec, 'Interrupted', 'Interrupted. The cell did not stop in time, so its kernel was stopped; the next run starts a fresh kernel (run the defining cells again).');
      } else {
        await this.fail(exec, 'KernelDied', `${result.message} The editor and this notebook are unaffected; the next run starts a fresh kernel (run the defining cells again).`);
      }
      return false;
    }
    if (result.reason === 'cancelled') {
      await this.fail(exec, 'Interrupted', 'Interrupted.');
      return false;
    }
    const name = result.reason === 'invalid' ? 'InvalidCell' : 'CellFailed';
    await this.fail(exec, name, `Cell ${exec.cell.index + 1}: ${result.message}`);
    return false;
  }

  private async fail(exec: vscode.NotebookCellExecution, name: string, message: string): Promise<void> {
    // An empty stack keeps VS Code from printing "Error: " noise above the message.
    await exec.replaceOutput(new vscode.NotebookCellOutput([vscode.NotebookCellOutputItem.error({ name, message, stack: '' })]));
    exec.end(false, Date.now());
  }

  private showStatus(text: string, hideAfterMs?: number): void {
    this.status.text = text;
    this.status.show();
    if (hideAfterMs) setTimeout(() => this.status.hide(), hideAfterMs);
  }

  /** Stops the kernel; the next run starts a fresh one. */
  async restart(): Promise<void> {
    const k = this.kernel;
    this.kernel = undefined;
    this.order = 0;
    if (k) await k.shutdown();
  }

  async clearCache(scope?: vscode.Uri): Promise<string> {
    const settings = readSettings(this.context, scope);
    const outcome = await this.ensureKernel().clearCache(settings.cacheFolder);
    if (outcome.type === 'result') return `Cleared the embedding cache in ${settings.cacheFolder} (${outcome.text}).`;
    throw new Error(outcome.message);
  }

  /** Kills the kernel process as a crash would (for tests). */
  killKernel(signal: NodeJS.Signals = 'SIGKILL'): boolean {
    if (!this.kernel?.alive || this.kernel.pid === undefined) return false;
    process.kill(this.kernel.pid, signal);
    return true;
  }

  dispose(): void {
    this.kernel?.kill();
    this.controller.dispose();
    this.trustListener.dispose();
    this.status.dispose();
    this.onDidStartKernel.dispose();
  }
}
