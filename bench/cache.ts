// The embedding cache's second-run speed-up, and the peak resident memory of encoding a
// large image set (goal: 20,000 images under 1.5 GB).
//
//   node out/bench/cache.js [--model models/default] [--count 2000] [--size 500x375]
//
// Generates JPEGs with sharp into a temp folder, embeds them twice through the cache
// (first run encodes all, second encodes none), prints both times, the ratio, and the
// process's peak RSS. `--count 20000` is the memory goal's setting.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';
import { embedImageSet } from '../extension/engine/embed';
import { EmbeddingCache } from '../extension/engine/embedding-cache';
import { ClipnModel } from '../extension/engine/encoder';
import { printMachine } from './machine';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] ? process.argv[i + 1] : fallback;
}

async function makeImages(dir: string, count: number, width: number, height: number): Promise<string[]> {
  fs.mkdirSync(dir, { recursive: true });
  const files: string[] = [];
  const noise = await sharp({ create: { width, height, channels: 3, background: '#808080', noise: { type: 'gaussian', mean: 128, sigma: 60 } } })
    .raw()
    .toBuffer();
  for (let i = 0; i < count; i++) {
    // Distinct content per file (the cache is keyed by content): tint the shared noise.
    const file = path.join(dir, `img_${String(i).padStart(6, '0')}.jpg`);
    await sharp(noise, { raw: { width, height, channels: 3 } })
      .linear([1, 1, 1], [i % 97, (i * 7) % 89, Math.floor(i / 97) % 83])
      .jpeg({ quality: 85 })
      .toFile(file);
    files.push(file);
  }
  return files;
}

async function main(): Promise<void> {
  printMachine();
  const modelDir = arg('model', path.resolve(__dirname, '..', '..', 'models', 'default'));
  const count = Number(arg('count', '2000'));
  const [width, height] = arg('size', '500x375').split('x').map(Number);
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'clipn-bench-cache-'));
  try {
    const files = await makeImages(path.join(work, 'images'), count, width, height);
    const model = await ClipnModel.load(modelDir, { backend: { executionProviders: ['cpu'] } });
    const cache = EmbeddingCache.forModel(path.join(work, 'cache'), model.manifest);
    const items = files.map((p) => ({ path: p }));
    const timed = async () => {
      const t = performance.now();
      const result = await embedImageSet(model, { items }, { cache, batchSize: 64 });
      return { seconds: (performance.now() - t) / 1000, result };
    };
    const first = await timed();
    const second = await timed();
    const rssMB = process.resourceUsage().maxRSS / 1024;
    console.log(`model: ${modelDir} (provider ${first.result.provider})`);
    console.log(`images: ${count} JPEG ${width}x${height}`);
    console.log(`first run:  ${first.seconds.toFixed(2)} s, encoded ${first.result.encoded} (${(count / first.seconds).toFixed(0)} images/s)`);
    console.log(`second run: ${second.seconds.toFixed(2)} s, encoded ${second.result.encoded}, from cache ${second.result.fromCache}`);
    console.log(`second-run speed-up: ${(first.seconds / second.seconds).toFixed(1)}x`);
    console.log(`peak RSS: ${rssMB.toFixed(0)} MB (goal for 20,000 images: < 1536 MB) ${rssMB < 1536 ? 'OK' : 'OVER'}`);
    await model.dispose();
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
