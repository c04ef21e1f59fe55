// Image sets: the glob matcher, folders-as-classes, CSV/JSON lists, and the problems a user's
// folder really has (non-images, unreadable and missing files, duplicates, empty sets).
import { strict as assert } from 'node:assert';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { crossSetDuplicates, DatasetError, loadDataset, parseCsv } from '../../extension/engine/datasets';
import { globToRegExp, splitGlob } from '../../extension/engine/glob';
import { REPO_ROOT } from './helpers/python';

const SAMPLES = path.join(REPO_ROOT, 'samples', 'images');
const sampleJpg = (cls: string, i = 0) => path.join(SAMPLES, 'id', cls, `${cls}_${String(i).padStart(3, '0')}.jpg`);

describe('glob matcher', () => {
  const cases: Array<[string, string[], string[]]> = [
    ['*.jpg', ['a.jpg', '.jpg'], ['d/a.jpg', 'a.png', 'a.jpgx']],
    ['**/*.jpg', ['a.jpg', 'd/a.jpg', 'd/e/a.jpg'], ['a.png', 'd/a.png']],
    ['a/**/b.png', ['a/b.png', 'a/x/b.png', 'a/x/y/b.png'], ['b.png', 'ab.png', 'a/xb.png']],
    ['a/**', ['a/x', 'a/x/y'], ['b/x']],
    ['?.png', ['a.png'], ['ab.png', '/.png']],
    ['{cat,dog}/*.jpg', ['cat/1.jpg', 'dog/2.jpg'], ['cow/1.jpg', 'cat/x/1.jpg']],
    ['x/{a,{b,c}d}.jpg', ['x/a.jpg', 'x/bd.jpg', 'x/cd.jpg'], ['x/b.jpg', 'x/ad.jpg']],
    ['img[12].jpg', ['img1.jpg', 'img2.jpg'], ['img3.jpg']],
    ['img[!12].jpg', ['img3.jpg'], ['img1.jpg']],
    ['\\*.jpg', ['*.jpg'], ['a.jpg']],
    ['a.b(1)+$.jpg', ['a.b(1)+$.jpg'], ['aXb(1)+$.jpg']],
    ['x**y.jpg', ['xy.jpg', 'xay.jpg'], ['x/y.jpg']],
  ];
  for (const [pattern, yes, no] of cases) {
    test(pattern, () => {
      const re = globToRegExp(pattern);
      for (const p of yes) assert.ok(re.test(p), `${pattern} should match ${p}`);
      for (const p of no) assert.ok(!re.test(p), `${pattern} should not match ${p}`);
    });
  }

  test('an unclosed brace is an error naming the pattern', () => {
    assert.throws(() => globToRegExp('{a,b/*.jpg'), /\{a,b\/\*\.jpg.*never closed/);
  });

  test('splitGlob keeps the literal leading folders as the walk root', () => {
    assert.deepEqual(splitGlob('data/train/*/*.jpg'), { base: 'data/train', rest: '*/*.jpg' });
    assert.deepEqual(splitGlob('/abs/x/**/*.png'), { base: '/abs/x', rest: '**/*.png' });
    assert.deepEqual(splitGlob('*.jpg'), { base: '.', rest: '*.jpg' });
  });
});

describe('parseCsv', () => {
  test('quotes, escaped quotes, commas and newlines inside quotes, CRLF, BOM, blank lines', () => {
    const rows = parseCsv('\uFEFFpath,label\r\n"a,b.jpg","say ""hi"""\r\n\r\n"multi\nline.jpg",x\nplain.jpg,\n');
    assert.deepEqual(rows.map((r) => r.fields), [['path', 'label'], ['a,b.jpg', 'say "hi"'], ['multi\nline.jpg', 'x'], ['plain.jpg', '']]);
    assert.deepEqual(rows.map((r) => r.line), [1, 2, 4, 6]);
  });
  test('an unclosed quote is an error with its line', () => {
    assert.throws(() => parseCsv('path\n"oops.jpg\n', 'list.csv'), /list\.csv: line 2/);
  });
});

describe('loadDataset', () => {
  let tmp: string;
  const asRoot = process.getuid?.() === 0;

  before(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'clipn-datasets-'));
  });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  /** A fresh folder under tmp with files copied from the samples (or given bytes). */
  function tree(name: string, files: Record<string, string | Buffer>): string {
    const root = path.join(tmp, name);
    for (const [rel, src] of Object.entries(files)) {
      const file = path.join(root, rel);
      fs.mkdirSync(path.dirname(file), { recursive: true });
      if (Buffer.isBuffer(src)) fs.writeFileSync(file, src);
      else fs.copyFileSync(src, file);
    }
    fs.mkdirSync(root, { recursive: true });
    return root;
  }

  test('folders as classes: the sample ID set', async () => {
    const set = await loadDataset(path.join(SAMPLES, 'id'), { role: 'id' });
    assert.equal(set.kind, 'folders');
    assert.deepEqual(set.classNames, ['arrow', 'circle', 'cross', 'square', 'star', 'triangle']);
    assert.equal(set.items.length, 72);
    assert.deepEqual(set.skipped, []);
    assert.deepEqual(set.warnings, []);
    for (const it of set.items) {
      assert.equal(it.className, path.basename(path.dirname(it.path)));
      assert.equal(set.classNames[it.label!], it.className);
      assert.equal(it.sha256, crypto.createHash('sha256').update(fs.readFileSync(it.path)).digest('hex'));
    }
    // Class order, then sorted paths within a class: deterministic.
    const paths = set.items.map((i) => i.path);
    assert.deepEqual(paths, [...paths].sort());
  });

  test('non-images, hidden files, loose files, nested folders, empty classes, duplicates', async () => {
    const root = tree('mixed', {
      'b_cls/one.jpg': sampleJpg('circle'),
      'b_cls/deep/two.JPG': sampleJpg('circle', 1),
      'a_cls/x.jpg': sampleJpg('circle'), // same bytes as b_cls/one.jpg
      'a_cls/notes.txt': Buffer.from('hello'),
      'a_cls/.DS_Store': Buffer.from('junk'),
      'loose.jpg': sampleJpg('star'),
    });
    fs.mkdirSync(path.join(root, 'c_empty'));
    fs.symlinkSync(path.join(root, 'nowhere.jpg'), path.join(root, 'a_cls', 'dangling.jpg'));
    const set = await loadDataset(root, { role: 'id' });
    assert.deepEqual(set.classNames, ['a_cls', 'b_cls', 'c_empty']);
    assert.deepEqual(set.items.map((i) => [path.relative(root, i.path), i.label]), [['a_cls/x.jpg', 0], ['b_cls/deep/two.JPG', 1], ['b_cls/one.jpg', 1]]);
    const reasons = Object.fromEntries(set.skipped.map((s) => [path.relative(root, s.path), s.reason]));
    assert.match(reasons['a_cls/notes.txt'], /not an image file \(extension "\.txt"/);
    assert.equal(reasons['a_cls/dangling.jpg'], 'file not found');
    assert.equal(reasons['loose.jpg'], 'not inside a class folder');
    assert.ok(!('a_cls/.DS_Store' in reasons), 'hidden files are ignored');
    const dup = set.warnings.find((w) => w.startsWith('duplicate image'));
    assert.ok(dup && dup.includes(path.join(root, 'a_cls', 'x.jpg')) && dup.includes(path.join(root, 'b_cls', 'one.jpg')), dup);
    assert.ok(set.warnings.some((w) => w.includes('class "c_empty" has no usable images')));
  });

  test('an unreadable file is skipped with its reason', { skip: asRoot ? 'root reads any file' : false }, async () => {
    const root = tree('unreadable', { 'k/a.jpg': sampleJpg('star'), 'k/b.jpg': sampleJpg('star', 1) });
    fs.chmodSync(path.join(root, 'k', 'b.jpg'), 0o000);
    const set = await loadDataset(root);
    assert.equal(set.items.length, 1);
    assert.deepEqual(set.skipped, [{ path: path.join(root, 'k', 'b.jpg'), reason: 'permission denied' }]);
  });

  test('one ID class is allowed but flagged; as an OOD set it is not', async () => {
    const root = tree('single', { 'only/a.jpg': sampleJpg('star'), 'only/b.jpg': sampleJpg('star', 1) });
    const id = await loadDataset(root, { role: 'id' });
    assert.equal(id.items.length, 2);
    assert.ok(id.warnings.some((w) => /only one ID class \("only"\)/.test(w)), id.warnings.join('\n'));
    assert.deepEqual((await loadDataset(root, { role: 'ood' })).warnings, []);
  });

  test('a flat folder is an unlabelled set', async () => {
    const root = tree('flat', { 'a.jpg': sampleJpg('star'), 'b.png': sampleJpg('cross') });
    const set = await loadDataset(root);
    assert.equal(set.kind, 'flat');
    assert.deepEqual(set.classNames, []);
    assert.deepEqual(set.items.map((i) => [path.basename(i.path), i.label]), [['a.jpg', undefined], ['b.png', undefined]]);
  });

  test('globs: classes from the folder below the literal base, relative to cwd', async () => {
    const set = await loadDataset('samples/images/id/*/*.jpg', { cwd: REPO_ROOT, role: 'id' });
    assert.equal(set.kind, 'glob');
    assert.equal(set.items.length, 72);
    assert.deepEqual(set.classNames, ['arrow', 'circle', 'cross', 'square', 'star', 'triangle']);
    const some = await loadDataset('samples/images/{id,ood}/c*/*_00[01].jpg', { cwd: REPO_ROOT });
    assert.deepEqual(some.items.map((i) => path.relative(SAMPLES, i.path)), [
      'id/circle/circle_000.jpg', 'id/circle/circle_001.jpg', 'id/cross/cross_000.jpg', 'id/cross/cross_001.jpg',
      'ood/crescent/crescent_000.jpg', 'ood/crescent/crescent_001.jpg',
    ]);
    assert.deepEqual(some.classNames, ['id', 'ood']);
    const flat = await loadDataset(path.join(SAMPLES, 'id', 'star', 'star_00?.jpg'));
    assert.equal(flat.items.length, 10);
    assert.deepEqual(flat.classNames, []);
  });

  test('CSV lists: paths relative to the list, quoted fields, bad rows skipped', async () => {
    const root = tree('csv', { 'imgs/a,b.jpg': sampleJpg('star'), 'imgs/c.jpg': sampleJpg('cross'), 'imgs/d.txt': Buffer.from('x') });
    fs.mkdirSync(path.join(root, 'imgs', 'folder.jpg')); // listed like a file but unreadable as one (also as root)
    fs.writeFileSync(
      path.join(root, 'list.csv'),
      ['path,label', '"imgs/a,b.jpg",star', 'imgs/c.jpg,"cross"', 'imgs/d.txt,star', 'imgs/missing.jpg,star', 'imgs/c.jpg,too,many', `${path.join(root, 'imgs', 'c.jpg')},x`, 'imgs/folder.jpg,star'].join('\n'),
    );
    const set = await loadDataset(path.join(root, 'list.csv'), { role: 'id' });
    assert.equal(set.kind, 'csv');
    assert.deepEqual(set.classNames, ['cross', 'star', 'x']);
    assert.deepEqual(set.items.map((i) => [path.relative(root, i.path), i.className, i.label]), [
      ['imgs/a,b.jpg', 'star', 1], ['imgs/c.jpg', 'cross', 0], ['imgs/c.jpg', 'x', 2],
    ]);
    const reasons = set.skipped.map((s) => `${path.relative(root, s.path)}: ${s.reason}`);
    assert.ok(reasons.some((r) => /imgs\/d\.txt: not an image file/.test(r)), reasons.join('\n'));
    assert.ok(reasons.includes('imgs/missing.jpg: file not found'), reasons.join('\n'));
    assert.ok(reasons.includes('imgs/folder.jpg: is a folder, not a file'), reasons.join('\n'));
    assert.ok(reasons.some((r) => /list\.csv line 6: 3 fields, the header has 2/.test(r)), reasons.join('\n'));
    assert.ok(set.warnings.some((w) => w.startsWith('duplicate image')));
  });

  test('CSV needs a header with a path column', async () => {
    const root = tree('csvbad', {});
    fs.writeFileSync(path.join(root, 'list.csv'), 'file,label\na.jpg,x\n');
    await assert.rejects(loadDataset(path.join(root, 'list.csv')), (e: Error) => e instanceof DatasetError && /list\.csv: the CSV header must name a "path" column/.test(e.message));
  });

  test('JSON lists: label or class, numbers flagged, junk entries skipped', async () => {
    const root = tree('json', { 'sub/a.jpg': sampleJpg('star'), 'sub/b.jpg': sampleJpg('cross'), 'c.jpg': sampleJpg('arrow') });
    fs.writeFileSync(path.join(root, 'set.json'), JSON.stringify([{ path: 'sub/a.jpg', label: 10 }, { path: 'sub/b.jpg', class: 2 }, 'junk', { label: 1 }, { path: 'c.jpg' }]));
    const set = await loadDataset(path.join(root, 'set.json'));
    assert.equal(set.kind, 'json');
    assert.deepEqual(set.classNames, ['10', '2']);
    assert.deepEqual(set.items.map((i) => [path.relative(root, i.path), i.className]), [['sub/a.jpg', '10'], ['sub/b.jpg', '2'], ['c.jpg', undefined]]);
    assert.deepEqual(set.skipped.map((s) => s.reason), ['not an object with "path"', 'no path']);
    assert.ok(set.warnings.some((w) => /class names are numbers/.test(w)));
    fs.writeFileSync(path.join(root, 'bad.json'), '{"path": "a.jpg"}');
    await assert.rejects(loadDataset(path.join(root, 'bad.json')), /bad\.json: must hold a JSON list/);
  });

  test('errors name the source: missing folder, empty folder, nothing usable, unknown file', async () => {
    await assert.rejects(loadDataset(path.join(tmp, 'nope')), (e: Error) => e instanceof DatasetError && e.message.includes(`${path.join(tmp, 'nope')}: folder not found`));
    const empty = tree('empty', {});
    await assert.rejects(loadDataset(empty), (e: Error) => e.message.startsWith(`${empty}: no images found (searched ${empty} for image files`));
    const junk = tree('junk', { 'k/readme.md': Buffer.from('#') });
    await assert.rejects(loadDataset(junk), (e: Error) => /no images found \(searched the class folders of .*; 1 entries skipped, e\.g\. .*readme\.md: not an image/.test(e.message));
    await assert.rejects(loadDataset(path.join(SAMPLES, 'id', 'zzz*', '*.jpg')), /no images found \(searched files matching "zzz\*\/\*\.jpg"/);
    const other = tree('other', { 'x.jpg': sampleJpg('star') });
    await assert.rejects(loadDataset(path.join(other, 'x.jpg')), /x\.jpg: is a file but not a \.csv or \.json list/);
  });

  test('hash: false skips hashing but still drops missing files', async () => {
    const root = tree('nohash', { 'k/a.jpg': sampleJpg('star') });
    fs.symlinkSync(path.join(root, 'gone.jpg'), path.join(root, 'k', 'b.jpg'));
    const set = await loadDataset(root, { hash: false });
    assert.deepEqual(set.items.map((i) => [path.basename(i.path), i.sha256]), [['a.jpg', undefined]]);
    assert.deepEqual(set.skipped.map((s) => s.reason), ['file not found']);
  });

  test('crossSetDuplicates finds an image that is in both sets', async () => {
    const a = await loadDataset(tree('xa', { 'k/a.jpg': sampleJpg('star'), 'k/b.jpg': sampleJpg('cross') }));
    const b = await loadDataset(tree('xb', { 'q.jpg': sampleJpg('cross'), 'r.jpg': sampleJpg('arrow') }));
    const dups = crossSetDuplicates(a, b);
    assert.equal(dups.length, 1);
    assert.match(dups[0], /xb\/q\.jpg .* same content as .*xa\/k\/b\.jpg/);
  });
});
