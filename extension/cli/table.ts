// The eval report as text, laid out like the CLIPN paper's tables: one row per method, a column
// group per OOD set and one for the average (AUROC, FPR95, AUPR-In, AUPR-Out, in percent),
// then the ID accuracy (the same classifier serves every method, so it repeats per row).
import type { EvalReport, MetricRow } from './evaluate';

const METRICS: Array<{ title: string; get: (r: MetricRow) => number }> = [
  { title: 'AUROC', get: (r) => r.auroc },
  { title: 'FPR95', get: (r) => r.fpr95 },
  { title: 'AUPR-In', get: (r) => r.auprIn },
  { title: 'AUPR-Out', get: (r) => r.auprOut },
];

const pct = (x: number): string => (100 * x).toFixed(2);

function centre(text: string, width: number): string {
  if (text.length >= width) return text.slice(0, width);
  const left = Math.floor((width - text.length) / 2);
  return ' '.repeat(left) + text + ' '.repeat(width - text.length - left);
}

/** The metrics table (methods x [OOD sets..., Average] x metrics, + ID acc). */
export function metricsTable(report: EvalReport): string[] {
  const groups = [...report.ood.map((o) => o.name), 'Average'];
  const cellW = Math.max(...METRICS.map((m) => m.title.length), 6);
  const groupW = METRICS.length * (cellW + 1) - 1;
  const methodW = Math.max('Method'.length, ...report.methods.map((m) => m.label.length));
  const acc = report.idAccuracy === null ? '-' : pct(report.idAccuracy);
  const accW = Math.max('ID acc'.length, acc.length);
  const sep = ' | ';
  const lines: string[] = [];
  lines.push(' '.repeat(methodW) + sep + groups.map((g) => centre(g, groupW)).join(sep) + sep + ' '.repeat(accW));
  lines.push(
    'Method'.padEnd(methodW) + sep + groups.map(() => METRICS.map((m) => m.title.padStart(cellW)).join(' ')).join(sep) + sep + 'ID acc'.padStart(accW),
  );
  lines.push('-'.repeat(methodW) + '-+-' + groups.map(() => '-'.repeat(groupW)).join('-+-') + '-+-' + '-'.repeat(accW));
  for (const m of report.methods) {
    const rows = [...report.ood.map((o) => m.perSet[o.name]), m.average];
    const cells = rows.map((r) => METRICS.map((x) => pct(x.get(r)).padStart(cellW)).join(' '));
    lines.push(m.label.padEnd(methodW) + sep + cells.join(sep) + sep + acc.padStart(accW));
  }
  return lines.map((l) => l.trimEnd());
}

/** Header lines: model, sets, prompts, providers, cache use. */
export function headerLines(report: EvalReport): string[] {
  const id = report.id;
  const lines = [
    `model: ${report.model.name} (${report.model.folder}, image graph ${report.model.precision})`,
    `ID: ${id.source}: ${report.classes.length} class${report.classes.length === 1 ? '' : 'es'}, ${id.embedded} images` +
      (id.embedded !== id.images ? ` of ${id.images}` : ''),
  ];
  for (const o of report.ood) lines.push(`OOD: ${o.name} (${o.source}): ${o.embedded} images` + (o.embedded !== o.images ? ` of ${o.images}` : ''));
  lines.push(
    `prompts: ${report.templates.set} templates (${report.templates.count}), learned "no" prompts averaged; ` +
      `scale ${report.scale}, MSP/MaxLogit/Energy at T = ${report.temperature}; FPR95 interpolated (CLIPN)`,
  );
  const encoded = [id, ...report.ood].reduce((s, x) => s + x.encoded, 0);
  const cached = [id, ...report.ood].reduce((s, x) => s + x.fromCache, 0);
  lines.push(`provider: images ${report.providers.image} (${encoded} encoded, ${cached} from cache), text ${report.providers.text}`);
  // Why a faster provider was not used (e.g. no CUDA libraries): the user's next step.
  for (const s of report.providers.skipped) lines.push(`  skipped ${s.name}: ${s.reason}`);
  lines.push(`cache: ${report.cacheDir ?? 'off'}`);
  return lines;
}
