// extensionTestsPath entry of the second integration run: the same mocha setup as ../suite, for
// the tests beside this file, which need a window whose workspace is NOT trusted (run.ts starts
// it without --disable-workspace-trust; see UNTRUSTED_USER_SETTINGS in ../host.ts).
import * as fs from 'node:fs';
import * as path from 'node:path';
import Mocha from 'mocha';

export function run(): Promise<void> {
  const mocha = new Mocha({ ui: 'tdd', color: false, timeout: 120_000, reporter: 'spec' });
  for (const f of fs.readdirSync(__dirname).filter((f) => f.endsWith('.test.js')).sort()) mocha.addFile(path.join(__dirname, f));
  return new Promise((resolve, reject) => {
    mocha.run((failures) => (failures > 0 ? reject(new Error(`${failures} untrusted-workspace integration tests failed`)) : resolve()));
  });
}
