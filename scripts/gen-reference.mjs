#!/usr/bin/env node
// Rewrites the cell-language reference in README.md from extension/language/schema.ts (via the
// compiled out/extension/language/reference.js), or with --check only says whether it is stale.
// Usage: node scripts/gen-reference.mjs [--check] [--readme PATH]   (after `npx tsc -p .`)
import { createRequire } from 'node:module';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const check = args.includes('--check');
const readmeAt = args.indexOf('--readme');
const readmePath = readmeAt >= 0 && args[readmeAt + 1] ? path.resolve(args[readmeAt + 1]) : path.join(root, 'README.md');
const command = 'npx tsc -p . && node scripts/gen-reference.mjs';

const compiled = path.join(root, 'out/extension/language/reference.js');
if (!fs.existsSync(compiled)) {
  console.error(`gen-reference: ${path.relative(root, compiled)} is missing; build first (npx tsc -p .)`);
  process.exit(2);
}
const { cellReference, readmeRegion, spliceReference, REFERENCE_START, REFERENCE_END } = createRequire(import.meta.url)(compiled);

const readme = fs.readFileSync(readmePath, 'utf8');
const current = readmeRegion(readme);
if (current === undefined) {
  console.error(`gen-reference: ${readmePath} has no ${REFERENCE_START} ... ${REFERENCE_END} region`);
  process.exit(2);
}
const reference = cellReference();
if (current === reference) {
  console.log(`gen-reference: ${path.relative(process.cwd(), readmePath) || readmePath} is up to date`);
  process.exit(0);
}
if (check) {
  console.error(
    `gen-reference: the cell-language reference in ${readmePath} is out of date with extension/language/schema.ts; run \`${command}\``,
  );
  process.exit(1);
}
fs.writeFileSync(readmePath, spliceReference(readme, reference));
console.log(`gen-reference: rewrote the cell-language reference in ${readmePath}`);
