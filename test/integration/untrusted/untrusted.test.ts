// The notebook in a window whose workspace is really untrusted (code-server with workspace trust
// on, the folder in no trusted list; see ../host.ts). Running the sample notebook goes through
// VS Code's own gate: before it hands cells to a kernel it asks "Do you trust the authors...?".
// In a window running extension tests VS Code shows no modal dialog (its DialogService refuses
// and logs it; the shim records that), so the request stays pending, as it would while a user
// looks at the dialog, and nothing runs: no kernel process, no outputs, no execution. The
// extension says why on its own (kernel picker detail, a warning), and its execute handler
// refuses too if it is ever reached. Dialogs and notifications come from $CLIPN_TEST_UI_LOG.
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import type { UiEvent } from '../code-server-shim';
import type { ClipnApi } from '../../../extension/main';
import { UNTRUSTED_DETAIL, UNTRUSTED_MESSAGE } from '../../../extension/controller';
import { clipnApi, codeCells, EXTENSION_ID, errorOf, openFile, untitled, waitFor, workspaceDir } from '../suite/util';

function uiEvents(): UiEvent[] {
  const file = process.env.CLIPN_TEST_UI_LOG;
  if (!file) throw new Error('CLIPN_TEST_UI_LOG is not set: this suite needs the code-server shim started without --disable-workspace-trust');
  if (!fs.existsSync(file)) return [];
  return fs.readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as UiEvent);
}

/** Processes below this one (the extension host) whose command line runs `entry`, from /proc. */
function descendantsRunning(entry: string): { pid: number; cmdline: string }[] {
  const parent = new Map<number, number>();
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      // Field 4 of stat is the parent pid; the command name (field 2) may hold spaces and ')'.
      const stat = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
      parent.set(Number(d), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      /* exited meanwhile */
    }
  }
  const isBelow = (pid: number) => {
    for (let p = parent.get(pid); p !== undefined && p > 1; p = parent.get(p)) if (p === process.pid) return true;
    return false;
  };
  const out: { pid: number; cmdline: string }[] = [];
  for (const pid of parent.keys()) {
    if (!isBelow(pid)) continue;
    try {
      const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
      if (cmdline.includes(entry)) out.push({ pid, cmdline });
    } catch {
      /* exited meanwhile */
    }
  }
  return out;
}

suite('CLIPN notebook in an untrusted workspace', () => {
  let api: ClipnApi;
  let kernelEntry: string;
  const kernelStarts: number[] = [];

  suiteSetup(async () => {
    api = await clipnApi();
    api.controller.onDidStartKernel.event((pid) => kernelStarts.push(pid));
    kernelEntry = path.join(vscode.extensions.getExtension(EXTENSION_ID)!.extensionPath, 'out', 'extension', 'kernel', 'main.js');
  });

  test('the window is really untrusted: vscode.workspace.isTrusted is false for the test folder', () => {
    assert.equal(vscode.workspace.isTrusted, false);
    const folders = vscode.workspace.workspaceFolders ?? [];
    assert.equal(folders.length, 1);
    assert.equal(folders[0].uri.fsPath, workspaceDir(), 'the folder opened by the launcher');
    assert.equal(vscode.workspace.getConfiguration('security.workspace.trust').get('enabled'), true);
  });

  test('Run All on the sample notebook asks for trust and, without it, runs nothing: no kernel process, no outputs', async () => {
    const file = path.join(workspaceDir(), 'samples', 'getting-started.clipnb');
    const nb = await openFile(file);
    const cells = codeCells(nb);
    assert.ok(cells.length >= 8, `the sample has its code cells (${cells.length})`);
    assert.ok(cells.every((c) => c.outputs.length === 0 && c.executionSummary?.executionOrder === undefined), 'the sample starts without outputs');
    const dialogsBefore = uiEvents().filter((e) => e.kind === 'dialog').length;
    assert.deepEqual(descendantsRunning(kernelEntry), [], 'no kernel process before the run');
    // Control: the process check does see a child of the extension host naming the kernel entry.
    const decoy = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 10000)', kernelEntry], { stdio: 'ignore' });
    try {
      await waitFor('the decoy in the process table', () => descendantsRunning(kernelEntry).some((p) => p.pid === decoy.pid), 5_000);
    } finally {
      decoy.kill('SIGKILL');
    }
    await waitFor('the decoy to exit', () => descendantsRunning(kernelEntry).length === 0, 5_000);

    // Run All through VS Code's command, as the toolbar button does. It waits for the answer to
    // the trust prompt, which nobody can give here: not awaited, only watched.
    let settled: string | undefined;
    vscode.commands.executeCommand('notebook.execute', nb.uri).then(
      () => (settled = 'resolved'),
      (err) => (settled = `rejected: ${err instanceof Error ? err.message : err}`),
    );
    const dialog = await waitFor('VS Code\'s trust prompt (in the UI log)', () => uiEvents().filter((e) => e.kind === 'dialog')[dialogsBefore], 20_000);
    assert.match(dialog.message, /^Do you trust the authors of the files in this (folder|workspace)\?$/);
    assert.equal(dialog.outcome, 'refused', 'extension-test windows show no modal dialogs');

    // Give a wrongly started run time to show itself (a kernel starts within a second), then
    // check that nothing happened, sampling the process table meanwhile.
    const seen: { pid: number; cmdline: string }[] = [];
    for (let i = 0; i < 15; i++) {
      seen.push(...descendantsRunning(kernelEntry));
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.deepEqual(seen, [], `no ${kernelEntry} process below the extension host (pid ${process.pid})`);
    assert.equal(vscode.workspace.isTrusted, false, 'still untrusted');
    assert.equal(settled, undefined, 'Run All is still waiting for trust');
    for (const c of codeCells(nb)) {
      assert.equal(c.outputs.length, 0, `cell ${c.index + 1} has no outputs`);
      assert.equal(c.executionSummary?.executionOrder, undefined, `cell ${c.index + 1} has no execution order`);
      assert.equal(c.executionSummary?.success, undefined, `cell ${c.index + 1} did not run`);
    }
    assert.equal(api.controller.kernelPid, undefined, 'the extension has no kernel');
    assert.deepEqual(kernelStarts, [], 'no kernel start was reported');
    assert.equal(nb.isDirty, false, 'the notebook is unchanged');
    await vscode.commands.executeCommand('workbench.action.closeActiveEditor');
  });

  test('the extension says why: kernel picker detail and a warning with Manage Workspace Trust', async () => {
    assert.equal(api.controller.controller.detail, UNTRUSTED_DETAIL);
    const warning = await waitFor('the extension\'s warning in the UI log', () => uiEvents().find((e) => e.kind === 'notification' && e.message.includes('CLIPN Lab runs nothing')), 20_000);
    assert.equal(warning.message, UNTRUSTED_MESSAGE);
    assert.ok(warning.buttons.includes('Manage Workspace Trust'), `buttons: ${warning.buttons.join(' | ')}`);
  });

  test('execute handler guard: called directly (bypassing VS Code\'s trust prompt) it refuses with an error output and starts no kernel', async () => {
    // VS Code never calls the handler in Restricted Mode; this checks the extension's own guard
    // against the real vscode.workspace.isTrusted, as if something did.
    const nb = await untitled(['model:\n']);
    const controller = api.controller.controller;
    await controller.executeHandler(codeCells(nb), nb, controller);
    const cell = nb.cellAt(0);
    // The execution's end reaches this document through the main thread: wait for it.
    await waitFor('the cell to end', () => cell.executionSummary?.success !== undefined, 10_000);
    assert.equal(cell.executionSummary?.success, false);
    const err = errorOf(cell);
    assert.equal(err?.name, 'UntrustedWorkspace');
    assert.equal(err?.message, UNTRUSTED_MESSAGE);
    assert.equal(api.controller.kernelPid, undefined);
    assert.deepEqual(kernelStarts, []);
    assert.deepEqual(descendantsRunning(kernelEntry), []);
    await vscode.commands.executeCommand('workbench.action.closeActiveEditor');
  });
});
