#!/usr/bin/env node
// clipn: the headless CLI over the engine (no VS Code needed), for jobs and terminals.
//   clipn eval  --model DIR --id PATH --ood PATH [--ood PATH ...] [...]  -> the paper's table
//   clipn embed --model DIR --images PATH --cache DIR [--shard i/n]      -> fills the cache
//   clipn run NOTEBOOK [--html REPORT] [--out NOTEBOOK]                   -> runs a notebook
//   clipn cuda-provider [--from FILE.tgz] [--dest DIR] [--check]          -> CUDA provider via npm
// Exit status: 0 done, 1 bad input or failure (one line on stderr naming the thing), 2 usage
// (and, for run, a notebook file that is missing or not a notebook).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { oneOf, optionalPositiveInt, parseArgs, providerList, required, shardSpec, UsageError } from './args';
import type { FlagKind } from './args';
import { IMAGE_PRECISIONS } from '../engine/encoder';
import { defaultCacheRoot, loadModel, oneLine, problemLines } from './common';
import { cudaProvider } from '../engine/cuda-provider';
import { runEmbedShard } from './embed-shard';
import { runEval } from './evaluate';
import { RUN_HELP, RUN_USAGE, runCommand } from './run-notebook';
import type { TemplateSet } from './evaluate';
import { headerLines, metricsTable } from './table';

const USAGE = `usage:
  clipn eval --model DIR --id PATH --ood PATH [--ood PATH ...] [--templates default|clip80]
             [--cache DIR | --no-cache] [--providers cuda,webgpu,cpu] [--batch N]
             [--precision fp32|fp16|int8] [--json out.json]
  clipn embed --model DIR --images PATH [--cache DIR] [--shard i/n] [--providers ...]
              [--batch N] [--precision fp32|fp16|int8] [--json out.json]
${RUN_USAGE}
  clipn cuda-provider [--from FILE.tgz] [--dest DIR] [--package NAME@VERSION] [--check]
              puts onnxruntime's CUDA provider beside onnxruntime-node from the npm registry
              (linux-x64), or with --check says what is missing
An image set (PATH) is a folder of class folders, a flat folder, a glob ("imgs/**/*.jpg",
quoted), or a .csv/.json list with a path and a label or class column.
--batch defaults to the provider's (32 images on CPU, 64 on WebGPU and CUDA).
The cache defaults to $CLIPN_CACHE or ~/.cache/clipn-lab. --shard i/n is 0-based: jobs
0/n .. (n-1)/n together cover the set (split by sorted path).

${RUN_HELP}`;

const COMMON: Record<string, FlagKind> = { model: 'one', cache: 'one', providers: 'one', batch: 'one', precision: 'one', json: 'one' };
const EVAL_FLAGS: Record<string, FlagKind> = { ...COMMON, id: 'one', ood: 'many', templates: 'one', 'no-cache': 'flag' };
const EMBED_FLAGS: Record<string, FlagKind> = { ...COMMON, images: 'one', shard: 'one' };
const CUDA_FLAGS: Record<string, FlagKind> = { from: 'one', dest: 'one', package: 'one', check: 'flag' };

function writeJson(file: string, value: unknown): void {
  try {
    fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
    fs.writeFileSync(file, `${JSON.stringify(value, null, 2)}\n`);
  } catch (err) {
    throw new Error(`${file}: cannot write the JSON output (${(err as Error).message})`);
  }
}

async function evalCommand(argv: string[]): Promise<void> {
  const args = parseArgs(argv, EVAL_FLAGS, 'eval');
  const modelDir = required(args, 'model', 'eval');
  const id = required(args, 'id', 'eval');
  const ood = args.many.get('ood') ?? [];
  if (ood.length === 0) throw new UsageError('eval: --ood is required (repeat it for several OOD sets)');
  if (args.flags.has('no-cache') && args.one.has('cache')) throw new UsageError('eval: give --cache or --no-cache, not both');
  const templates = oneOf<TemplateSet>(args, 'templates', 'eval', ['default', 'clip80'], 'default');
  const batchSize = optionalPositiveInt(args, 'batch', 'eval');
  const precision = oneOf(args, 'precision', 'eval', IMAGE_PRECISIONS, 'fp32');
  const cacheRoot = args.flags.has('no-cache') ? undefined : path.resolve(args.one.get('cache') ?? defaultCacheRoot());
  const providers = providerList(args, 'eval');
  const jsonOut = args.one.get('json');

  const started = performance.now();
  const model = await loadModel(modelDir, cacheRoot, providers);
  try {
    const report = await runEval({ model, id, ood, templates, cacheRoot, batchSize, precision });
    const out = [...headerLines(report), '', ...metricsTable(report), ''];
    for (const s of [report.id, ...report.ood]) out.push(...problemLines(`${s === report.id ? 'ID' : 'OOD'} ${s.name}`, s.skipped, s.failures, s.warnings));
    for (const w of report.warnings) out.push(`warning: ${w}`);
    const seconds = (performance.now() - started) / 1000;
    out.push(`done in ${seconds.toFixed(2)} s (text ${report.seconds.text.toFixed(2)} s, images ${report.seconds.images.toFixed(2)} s)`);
    if (jsonOut) {
      writeJson(jsonOut, { command: 'eval', ...report, seconds: { ...report.seconds, total: seconds } });
      out.push(`wrote ${jsonOut}`);
    }
    process.stdout.write(`${out.join('\n')}\n`);
  } finally {
    await model.dispose();
  }
}

async function embedCommand(argv: string[]): Promise<void> {
  const args = parseArgs(argv, EMBED_FLAGS, 'embed');
  const modelDir = required(args, 'model', 'embed');
  const images = required(args, 'images', 'embed');
  const shard = shardSpec(args, 'embed');
  const batchSize = optionalPositiveInt(args, 'batch', 'embed');
  const precision = oneOf(args, 'precision', 'embed', IMAGE_PRECISIONS, 'fp32');
  const cacheRoot = path.resolve(args.one.get('cache') ?? defaultCacheRoot());
  const providers = providerList(args, 'embed');
  const jsonOut = args.one.get('json');

  const started = performance.now();
  const model = await loadModel(modelDir, cacheRoot, providers);
  try {
    const r = await runEmbedShard({ model, images, cacheRoot, shard, batchSize, precision });
    const res = r.result;
    const out = [
      `shard ${shard.index}/${shard.count} of ${r.set.source}: ${r.items.length} of ${r.set.items.length} images` +
        (r.items.length ? ` (${r.items[0].path} .. ${r.items[r.items.length - 1].path})` : ''),
      `provider: ${res.provider} (${res.encoded} encoded, ${res.fromCache} from cache)`,
      `cache: ${r.cacheDir}`,
      ...problemLines(`images ${r.set.source}`, r.set.skipped, res.failures, [...r.set.warnings, ...res.cacheWarnings]),
      `done in ${((performance.now() - started) / 1000).toFixed(2)} s`,
    ];
    if (jsonOut) {
      writeJson(jsonOut, {
        command: 'embed', source: r.set.source, shard, images: r.items.length, total: r.set.items.length, embedded: res.dims[0],
        encoded: res.encoded, fromCache: res.fromCache, provider: res.provider, cacheDir: r.cacheDir,
        skipped: r.set.skipped, failures: res.failures, warnings: [...r.set.warnings, ...res.cacheWarnings],
      });
      out.push(`wrote ${jsonOut}`);
    }
    process.stdout.write(`${out.join('\n')}\n`);
  } finally {
    await model.dispose();
  }
}

function cudaProviderCommand(argv: string[]): void {
  const args = parseArgs(argv, CUDA_FLAGS, 'cuda-provider');
  if (args.flags.has('check') && (args.one.has('from') || args.one.has('package'))) {
    throw new UsageError('cuda-provider: --check installs nothing; give it without --from or --package');
  }
  const lines = cudaProvider({ from: args.one.get('from'), dest: args.one.get('dest'), packageSpec: args.one.get('package'), check: args.flags.has('check') });
  process.stdout.write(`${lines.join('\n')}\n`);
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'eval':
        await evalCommand(rest);
        return 0;
      case 'embed':
        await embedCommand(rest);
        return 0;
      case 'run':
        return await runCommand(rest);
      case 'cuda-provider':
        cudaProviderCommand(rest);
        return 0;
      case 'help':
      case '--help':
      case '-h':
        process.stdout.write(`${USAGE}\n`);
        return 0;
      case undefined:
        process.stderr.write(`${USAGE}\n`);
        return 2;
      default:
        throw new UsageError(`unknown command ${JSON.stringify(command)} (commands: eval, embed, run, cuda-provider, help)`);
    }
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    process.stderr.write(`clipn: error: ${oneLine(message)}\n`);
    return err instanceof UsageError ? 2 : 1;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
