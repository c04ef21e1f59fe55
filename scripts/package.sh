#!/bin/sh
# Packages the extension for one VS Code platform target:
#   scripts/package.sh [TARGET] [--out FILE]        (also: npm run package -- TARGET)
# TARGET: linux-x64 (default), linux-arm64, darwin-x64, darwin-arm64, win32-x64, win32-arm64;
# `--target TARGET` is accepted too. Writes build/clipn-lab-TARGET.vsix unless --out says where
# (a relative FILE is taken from the repository root). A target whose onnxruntime binaries the
# installed onnxruntime-node lacks is refused (1.29.0 ships none for darwin-x64).
#
# The .vsix carries native code for its target only: the ignore file handed to vsce is
# .vscodeignore plus lines, computed here from what is installed, that drop
#   - the native ATD kernel (native/build) unless the target is this machine's platform,
#   - onnxruntime-node's binaries for every other os/arch (bin/napi-v*/OS/ARCH),
#   - every @img/sharp-* package (sharp's per-platform binary and libvips) of another platform,
#   - onnxruntime-node's install-time helpers (adm-zip, global-agent and what only they need:
#     its postinstall downloads CUDA libraries; nothing loads them at run time).
#
# sharp's binaries come from optional packages, and npm installs only the host platform's. For
# another target, install that target's first, e.g. for darwin-arm64
#   npm install --no-save --os=darwin --cpu=arm64 sharp
# (what sharp's own error message suggests; the most reliable way is `npm ci` and this script on
# a machine or CI runner of the target platform). Without them this script still packages, with
# a warning: that .vsix runs everything but image decoding.
#
# The bundles are built by vsce's prepublish step (`npm run build`); CLIPN_SKIP_PREPUBLISH_BUILD=1
# skips it when dist/ is known to be fresh (test/unit/package.test.ts sets it after running
# scripts/build-extension.mjs, so the test never rewrites out/ while other tests read it).
set -eu
cd "$(dirname "$0")/.."

target=linux-x64
out=
while [ $# -gt 0 ]; do
  case "$1" in
    --target|-t) target="$2"; shift 2 ;;
    --out|-o) out="$2"; shift 2 ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    -*) echo "package.sh: unknown option $1" >&2; exit 2 ;;
    *) target="$1"; shift ;;
  esac
done
case "$target" in
  linux-x64|linux-arm64|darwin-x64|darwin-arm64|win32-x64|win32-arm64) ;;
  *) echo "package.sh: target must be one of linux-x64 linux-arm64 darwin-x64 darwin-arm64 win32-x64 win32-arm64, got '$target'" >&2; exit 2 ;;
esac
[ -n "$out" ] || out="build/clipn-lab-$target.vsix"
mkdir -p build "$(dirname "$out")"
# Per run: two packagings at once (the e2e test and a unit test, say) must not share it.
ignore="build/vscodeignore-$target.$$"
trap 'rm -f "$ignore"' EXIT

# Writes the ignore file; prints warnings on stderr; fails when the target's onnxruntime is absent.
node - "$target" "$ignore" <<'EOF'
const fs = require('node:fs');
const path = require('node:path');
const [target, ignoreFile] = process.argv.slice(2);
const nm = 'node_modules';
const lines = [fs.readFileSync('.vscodeignore', 'utf8').trimEnd(), '', `# scripts/package.sh: target ${target}`];

// onnxruntime-node: bin/napi-vN/OS/ARCH/, the binding picks process.platform/process.arch.
const ortBin = path.join(nm, 'onnxruntime-node', 'bin');
let ortFound = false;
for (const napi of fs.readdirSync(ortBin)) {
  for (const os of fs.readdirSync(path.join(ortBin, napi))) {
    for (const arch of fs.readdirSync(path.join(ortBin, napi, os))) {
      if (`${os}-${arch}` === target) ortFound = true;
      else lines.push(`${nm}/onnxruntime-node/bin/${napi}/${os}/${arch}/**`);
    }
  }
}
// macOS: the npm package holds two identical copies, libonnxruntime.1.dylib and
// libonnxruntime.1.N.N.dylib (44 MB each); the binding loads @rpath/libonnxruntime.1.dylib, so
// the versioned copy is dropped, only when the binding names that file and the bytes are equal.
for (const napi of fs.readdirSync(ortBin)) {
  const [os, arch] = target.split('-');
  const d = path.join(ortBin, napi, os, arch);
  const binding = path.join(d, 'onnxruntime_binding.node');
  if (os !== 'darwin' || !fs.existsSync(binding)) continue;
  const loads = fs.readFileSync(binding).includes('@rpath/libonnxruntime.1.dylib');
  const main = path.join(d, 'libonnxruntime.1.dylib');
  for (const f of fs.readdirSync(d)) {
    if (!/^libonnxruntime\.1\.\d+\.\d+\.dylib$/.test(f) || !loads || !fs.existsSync(main)) continue;
    if (fs.readFileSync(path.join(d, f)).equals(fs.readFileSync(main))) lines.push(`${nm}/onnxruntime-node/bin/${napi}/${os}/${arch}/${f}`);
  }
}
// The native ATD kernel (native/build, scripts/build-native.mjs) is built for this machine only.
if (target !== `${process.platform}-${process.arch}`) lines.push('native/build/**');
if (!ortFound) {
  console.error(`package.sh: error: onnxruntime-node has no binaries for ${target} under ${ortBin}`);
  process.exit(1);
}

// sharp: @img/sharp-PLATFORM and @img/sharp-libvips-PLATFORM, PLATFORM like linux-x64,
// linuxmusl-x64 (Alpine), darwin-arm64, win32-x64 (libvips inside), wasm32.
const img = path.join(nm, '@img');
const installed = fs.existsSync(img) ? fs.readdirSync(img) : [];
for (const name of installed) {
  const m = /^sharp-(?:libvips-)?(.+)$/.exec(name);
  if (m && m[1] !== target) lines.push(`${nm}/@img/${name}/**`);
}
const needed = target.startsWith('win32-') ? [`sharp-${target}`] : [`sharp-${target}`, `sharp-libvips-${target}`];
const missing = needed.filter((n) => !installed.includes(n));
if (missing.length > 0) {
  const [os, cpu] = target.split('-');
  console.error(
    `package.sh: WARNING: ${missing.map((n) => '@img/' + n).join(' and ')} not installed, so this ${target} .vsix cannot decode images ` +
      `(sharp fails to load there); before packaging, run: npm install --no-save --os=${os} --cpu=${cpu} sharp`,
  );
}

// onnxruntime-node's postinstall-only dependencies, minus anything a run-time package needs.
function dir(from, name) {
  for (let d = from; ; d = path.dirname(d)) {
    const p = path.join(d, nm, name);
    if (fs.existsSync(path.join(p, 'package.json'))) return p;
    if (d === '.' || d === path.dirname(d)) return undefined;
  }
}
function closure(starts) {
  const seen = new Set();
  const stack = starts.filter(Boolean);
  while (stack.length) {
    const p = stack.pop();
    if (seen.has(p)) continue;
    seen.add(p);
    const pkg = JSON.parse(fs.readFileSync(path.join(p, 'package.json'), 'utf8'));
    for (const dep of Object.keys(pkg.dependencies ?? {})) stack.push(dir(p, dep));
  }
  return seen;
}
const ort = dir('.', 'onnxruntime-node');
const installOnly = closure(['adm-zip', 'global-agent'].map((n) => dir(ort, n)));
const runtime = closure([dir(ort, 'onnxruntime-common'), dir('.', 'sharp')]);
for (const p of installOnly) if (!runtime.has(p)) lines.push(`${p.split(path.sep).join('/')}/**`);

fs.writeFileSync(ignoreFile, lines.join('\n') + '\n');
EOF

"$PWD/node_modules/.bin/vsce" package --target "$target" --ignoreFile "$ignore" --out "$out" \
  --allow-missing-repository --skip-license --no-rewrite-relative-links
