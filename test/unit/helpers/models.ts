// Builds a tiny CLIPN model folder with the real Python exporter (models/clipn/export.py), once
// per test process, so engine tests run against genuine ONNX graphs and a PyTorch parity
// fixture without depending on the bundled model. The checkpoint is saved beside it so tests can
// compute PyTorch references for inputs of their own.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PYTHON, REPO_ROOT } from './python';

export interface MicroModel {
  /** The exported model folder (clipn.json, graphs, parity/). */
  folder: string;
  /** The same weights as a CLIPN checkpoint (models/clipn/checkpoint.py layout). */
  checkpoint: string;
  /** Scratch space for the test process, removed at exit. */
  workDir: string;
}

const EXPORT_SCRIPT = `
import json, sys
from pathlib import Path
import torch
from clipn.checkpoint import save_checkpoint
from clipn.config import get_config
from clipn.model import CLIPN
from clipn.recipe import caption_corpus
from clipn.vocab import learn_merges, write_merges
from clipn.tokenizer import ClipTokenizer
from clipn.export import export_model

work = Path(sys.argv[1])
merges = work / "merges.txt"
write_merges(merges, learn_merges(caption_corpus()))
torch.manual_seed(0)
model = CLIPN(get_config("micro").with_vocab(ClipTokenizer(merges).vocab_size))
with torch.no_grad():
    model.prompt_no.normal_(0.0, 0.5)  # non-zero learned prompts, so the mixing weights matter
export_model(model, merges, work / "micro", "micro", fp16=True, int8=True, templates=["a photo of a {}.", "a {}."])
save_checkpoint(work / "micro.pt", model, epoch=0, name="micro")
print(json.dumps({"folder": str(work / "micro"), "checkpoint": str(work / "micro.pt")}))
`;

let cached: MicroModel | undefined;

/** Exports the micro model (cached for this process) and returns its folder and checkpoint. */
export function exportMicro(): MicroModel {
  if (cached) return cached;
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'clipn-micro-'));
  process.on('exit', () => fs.rmSync(workDir, { recursive: true, force: true }));
  const result = spawnSync(PYTHON, ['-c', EXPORT_SCRIPT, workDir], {
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
    env: { ...process.env, PYTHONPATH: path.join(REPO_ROOT, 'models'), PYTHONWARNINGS: 'ignore' },
  });
  if (result.status !== 0) throw new Error(`micro model export failed (exit ${result.status}): ${result.stderr}`);
  const lines = result.stdout.trim().split('\n');
  const info = JSON.parse(lines[lines.length - 1]) as { folder: string; checkpoint: string };
  cached = { ...info, workDir };
  return cached;
}

/** The exported micro model folder (cached per process in os.tmpdir()). */
export function exportMicroModel(): string {
  return exportMicro().folder;
}

/** A private copy of a model folder, for tests that damage it. */
export function copyModelFolder(folder: string, name: string): string {
  const dest = path.join(exportMicro().workDir, name);
  fs.rmSync(dest, { recursive: true, force: true });
  fs.cpSync(folder, dest, { recursive: true });
  return dest;
}

/** The bundled default model, when it has been built (tests use it only if present). */
export const DEFAULT_MODEL_DIR = path.join(REPO_ROOT, 'models', 'default');
export function defaultModelPresent(): boolean {
  return fs.existsSync(path.join(DEFAULT_MODEL_DIR, 'clipn.json'));
}
