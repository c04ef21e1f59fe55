// NotebookSerializer for *.clipnb: maps nbformat.ts's plain model to VS Code's NotebookData.
// A file that is not a notebook throws: VS Code then shows the error instead of opening an
// empty notebook, so nothing can save over the user's file.
import * as vscode from 'vscode';
import { NbCell, NbNotebook, NbOutput, newNotebookMetadata, parseNotebook, serializeNotebook } from './nbformat';

/** What a VS Code cell's metadata holds: the nbformat cell's fields that have no VS Code home. */
interface CellMeta {
  metadata?: Record<string, unknown>;
  id?: string;
  attachments?: unknown;
  raw?: boolean;
}

interface NotebookMeta {
  metadata?: Record<string, unknown>;
  nbformatMinor?: number;
}

function toCellData(cell: NbCell): vscode.NotebookCellData {
  const kind = cell.kind === 'markdown' ? vscode.NotebookCellKind.Markup : vscode.NotebookCellKind.Code;
  const data = new vscode.NotebookCellData(kind, cell.source, cell.language);
  const meta: CellMeta = { metadata: cell.metadata };
  if (cell.id !== undefined) meta.id = cell.id;
  if (cell.attachments !== undefined) meta.attachments = cell.attachments;
  if (cell.kind === 'raw') meta.raw = true;
  data.metadata = meta as Record<string, unknown>;
  data.outputs = cell.outputs.map(
    (o) =>
      new vscode.NotebookCellOutput(
        o.items.map((i) => new vscode.NotebookCellOutputItem(i.data, i.mime)),
        { outputType: o.outputType, executionCount: o.executionCount, metadata: o.metadata },
      ),
  );
  if (typeof cell.executionCount === 'number') data.executionSummary = { executionOrder: cell.executionCount };
  return data;
}

function fromCellData(cell: vscode.NotebookCellData): NbCell {
  const meta = (cell.metadata ?? {}) as CellMeta;
  const kind: NbCell['kind'] = cell.kind === vscode.NotebookCellKind.Markup ? 'markdown' : meta.raw ? 'raw' : 'code';
  const outputs: NbOutput[] = (cell.outputs ?? []).map((o) => {
    const m = (o.metadata ?? {}) as Omit<NbOutput, 'items'>;
    const out: NbOutput = { items: o.items.map((i) => ({ mime: i.mime, data: i.data })) };
    if (m.outputType) out.outputType = m.outputType;
    if (m.executionCount !== undefined) out.executionCount = m.executionCount;
    if (m.metadata) out.metadata = m.metadata;
    return out;
  });
  const nb: NbCell = {
    kind,
    source: cell.value,
    language: cell.languageId,
    metadata: meta.metadata ?? {},
    outputs,
    executionCount: cell.executionSummary?.executionOrder ?? null,
  };
  if (meta.id !== undefined) nb.id = meta.id;
  if (meta.attachments !== undefined) nb.attachments = meta.attachments;
  return nb;
}

export class ClipnSerializer implements vscode.NotebookSerializer {
  deserializeNotebook(content: Uint8Array): vscode.NotebookData {
    // Errors propagate on purpose (see the file comment); their message names the problem.
    const nb = parseNotebook(content);
    const data = new vscode.NotebookData(nb.cells.map(toCellData));
    const meta: NotebookMeta = {
      metadata: nb.cells.length === 0 && Object.keys(nb.metadata).length === 0 ? newNotebookMetadata() : nb.metadata,
      nbformatMinor: nb.nbformatMinor,
    };
    data.metadata = meta as Record<string, unknown>;
    return data;
  }

  serializeNotebook(data: vscode.NotebookData): Uint8Array {
    const meta = (data.metadata ?? {}) as NotebookMeta;
    const nb: NbNotebook = {
      cells: data.cells.map(fromCellData),
      metadata: meta.metadata ?? newNotebookMetadata(),
      nbformatMinor: meta.nbformatMinor ?? 4,
    };
    return serializeNotebook(nb);
  }
}
