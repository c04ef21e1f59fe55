#!/usr/bin/env bash
# Packs what the GPU machine (no network, no node) needs to run scripts/gpu/run.sh into the
# ignored folder .gpu-pack/ (one bundle.tar.xz), and the Vulkan loader debs into .gl/.
#
#   npx tsc -p . && bash scripts/gpu/pack.sh [--no-sharp] [--cuda]
#   bash scripts/gpu/pack.sh --size     # only re-count what would travel now (no repack)
#
# --cuda also packs onnxruntime's CUDA provider (the npm package that `clipn.js cuda-provider`
# installs; CLIPN_CUDA_TGZ=FILE uses a tarball already fetched): ~165 MB as xz, more than one
# call may carry, so it is split into .gpu-cuda/pNN parts, each sized to travel with the working
# tree in a call of its own (.gpu-pack/cuda.sha256 names the whole). Files a call carried stay on
# the warm machine for later calls (the device tool keeps ignored outputs), so: one call carries
# .gpu-pack and .gl, one call each carries a part, and the last part's call runs run.sh, which
# reassembles, checks and installs the provider. The script prints that plan.
#
# The bundle unpacks (run.sh does it) into .gpu-run/:
#   bin/node                     this machine's node (process.execPath), symbols stripped
#   node_modules/onnxruntime-node    js + the linux/x64 napi binaries only (webgpu EP inside)
#   node_modules/onnxruntime-common  dist/cjs
#   node_modules/sharp, @img/{colour,sharp-linux-x64,sharp-libvips-linux-x64}, detect-libc,
#     semver                     image decoding (end-to-end rows); --no-sharp packs a stub instead
#   out/extension/engine, out/bench/gpu*.js + machine.js, out/test/unit/{engine-model.test.js,helpers}
# yaml is not packed: nothing the bench or those tests load imports it.
#
# What travels to the device machine is the working tree (tracked + untracked-not-ignored
# files) plus the carried .gpu-pack and .gl: 64 MiB in all. The end of the output says how
# much of that this pack leaves. If the total would not fit, sharp is dropped automatically.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
LIMIT=$((64 * 1024 * 1024))
NO_SHARP=0
SIZE_ONLY=0
CUDA=0
for arg in "$@"; do
  case $arg in
    --no-sharp) NO_SHARP=1 ;;
    --size) SIZE_ONLY=1 ;;
    --cuda) CUDA=1 ;;
    *) echo "pack: unknown option $arg (--no-sharp, --cuda, --size)" >&2; exit 2 ;;
  esac
done
NICE="nice -n 10"

# Ignore the pack folders locally (never .gitignore: other people own it).
mkdir -p .git/info
touch .git/info/exclude
for p in /.gpu-pack/ /.gl/ /.gpu-run/ /.gpu-cuda/; do
  grep -qxF "$p" .git/info/exclude || echo "$p" >>.git/info/exclude
done

NODE_BIN=$(node -p 'process.execPath')
for f in out/bench/gpu.js out/extension/engine/encoder.js node_modules/onnxruntime-node/package.json; do
  [[ -f "$f" ]] || { echo "pack: $f missing: run 'npm ci' and 'npx tsc -p .' first" >&2; exit 1; }
done

# --- Vulkan loader + GL vendor-neutral dispatch (Debian amd64 debs), fetched once.
if ! ls .gl/libvulkan1_*.deb >/dev/null 2>&1; then
  echo "pack: downloading the Vulkan loader debs into .gl/"
  mkdir -p .gl /tmp/amd64/partial
  o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
  # shellcheck disable=SC2086
  apt-get $o update >/dev/null
  # shellcheck disable=SC2086
  (cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
fi

stage() {
  local with_sharp=$1 st=$2
  rm -rf "$st"
  mkdir -p "$st/bin" "$st/node_modules" "$st/out/bench" "$st/out/extension" "$st/out/test/unit"
  # node: strip the symbol table (keeps .dynsym, which native addons link against): 99 -> 86 MB.
  if command -v strip >/dev/null; then
    strip --strip-unneeded -o "$st/bin/node" "$NODE_BIN"
  else
    cp "$NODE_BIN" "$st/bin/node"
  fi
  chmod 755 "$st/bin/node"
  local ortn=node_modules/onnxruntime-node
  mkdir -p "$st/$ortn/dist" "$st/$ortn/bin/napi-v6/linux/x64"
  cp $ortn/package.json "$st/$ortn/"
  cp $ortn/dist/*.js "$st/$ortn/dist/"
  cp $ortn/bin/napi-v6/linux/x64/* "$st/$ortn/bin/napi-v6/linux/x64/"
  local ortc=node_modules/onnxruntime-common
  mkdir -p "$st/$ortc/dist"
  cp $ortc/package.json "$st/$ortc/"
  cp -r $ortc/dist/cjs "$st/$ortc/dist/"
  find "$st/$ortc" -name '*.map' -delete
  if [[ $with_sharp == 1 ]]; then
    mkdir -p "$st/node_modules/@img"
    cp -r node_modules/sharp "$st/node_modules/"
    rm -rf "$st/node_modules/sharp/src" "$st/node_modules/sharp/install"
    for d in colour sharp-linux-x64 sharp-libvips-linux-x64; do cp -r "node_modules/@img/$d" "$st/node_modules/@img/"; done
    for d in detect-libc semver; do [[ -d node_modules/$d ]] && cp -r "node_modules/$d" "$st/node_modules/"; done
  else
    # The engine imports sharp at load time; a stub lets it load (decoding then fails, and the
    # bench skips its end-to-end rows).
    mkdir -p "$st/node_modules/sharp"
    echo '{"name":"sharp","version":"0.0.0-stub","main":"index.js"}' >"$st/node_modules/sharp/package.json"
    cat >"$st/node_modules/sharp/index.js" <<'EOF'
function sharp() { throw new Error('sharp was not packed for this GPU run (scripts/gpu/pack.sh --no-sharp)'); }
sharp.__clipnStub = true;
sharp.concurrency = () => 0;
module.exports = sharp;
module.exports.default = sharp;
EOF
  fi
  cp -r out/extension/engine "$st/out/extension/"
  cp out/bench/gpu*.js out/bench/machine.js "$st/out/bench/"
  mkdir -p "$st/out/test/unit/helpers"
  [[ -f out/test/unit/engine-model.test.js ]] && cp out/test/unit/engine-model.test.js "$st/out/test/unit/"
  cp out/test/unit/helpers/*.js "$st/out/test/unit/helpers/" 2>/dev/null || true
  find "$st/out" -name '*.map' -delete
  # The staged tree must load with the staged node before it is worth compressing.
  (cd "$st" && ./bin/node -e "
    const ort = require('onnxruntime-node');
    const names = ort.listSupportedBackends().map((b) => b.name);
    if (!names.includes('webgpu')) throw new Error('no webgpu in this onnxruntime-node build: ' + names);
    require('./out/extension/engine/encoder');
    console.log('pack: staged node ' + process.version + ', onnxruntime-node providers ' + names.join(','));
  ")
}

tree_bytes() {
  # Tracked + untracked-not-ignored files (what the device tool sends), plus shared/ if inside.
  # (files deleted in the work tree are still listed: stat fails on them, which is fine)
  { git ls-files -z -co --exclude-standard | xargs -0 -r stat -L -c %s 2>/dev/null || true; } | awk '{s+=$1} END {print s+0}'
}

mib() { awk -v b="$1" 'BEGIN {printf "%.1f MiB", b / 1048576}'; }
if [[ $SIZE_ONLY == 1 ]]; then
  [[ -f .gpu-pack/bundle.tar.xz ]] || { echo "pack: no .gpu-pack/bundle.tar.xz yet" >&2; exit 1; }
  pack=$(stat -c %s .gpu-pack/bundle.tar.xz)
  gl=$(du -cb .gl/*.deb | tail -1 | cut -f1)
  tree=$(tree_bytes)
  total=$((pack + gl + tree))
  echo "pack: bundle $(mib "$pack") ($(cat .gpu-pack/CONTENTS 2>/dev/null)), .gl $(mib "$gl"), working tree $(mib "$tree"): $(mib "$total") of 64 MiB, $(mib $((LIMIT - total))) to spare"
  ((total <= LIMIT)) || { echo "pack: OVER the 64 MiB limit" >&2; exit 1; }
  exit 0
fi

STAGE=$(mktemp -d /tmp/clipn-gpu-stage.XXXXXX)
trap 'rm -rf "$STAGE"' EXIT
mkdir -p .gpu-pack
rm -f .gpu-pack/bundle.tar.xz
with_sharp=$((1 - NO_SHARP))
while :; do
  stage $with_sharp "$STAGE/r"
  echo "pack: staged $(du -sh "$STAGE/r" | cut -f1) (sharp: $([[ $with_sharp == 1 ]] && echo yes || echo stub)); compressing with xz (x86 BCJ + LZMA2 -9, ~3 min on 2 cores)"
  # Binaries first (BCJ helps them), text after.
  (cd "$STAGE/r" && find . -type f -printf '%s\t%p\n' | sort -t$'\t' -k1,1nr | cut -f2- >../list)
  tar -C "$STAGE/r" --owner=0 --group=0 --numeric-owner -cf - -T "$STAGE/list" |
    $NICE xz -T2 --x86 --lzma2=preset=9 >.gpu-pack/bundle.tar.xz
  pack=$(stat -c %s .gpu-pack/bundle.tar.xz)
  gl=$(du -cb .gl/*.deb | tail -1 | cut -f1)
  tree=$(tree_bytes)
  total=$((pack + gl + tree))
  if ((total > LIMIT - 2 * 1024 * 1024)) && [[ $with_sharp == 1 ]]; then
    echo "pack: $((total / 1048576)) MiB would leave under 2 MiB of the 64 MiB: repacking without sharp"
    with_sharp=0
    continue
  fi
  break
done
[[ $with_sharp == 1 ]] && echo sharp >.gpu-pack/CONTENTS || echo stub-sharp >.gpu-pack/CONTENTS
echo "pack: .gpu-pack/bundle.tar.xz $(mib "$pack") (sharp: $([[ $with_sharp == 1 ]] && echo yes || echo no)); .gl debs $(mib "$gl"); working tree $(mib "$tree")"
echo "pack: total that travels $(mib "$total") of 64 MiB; $(mib $((LIMIT - total))) to spare"
if [[ ! -f models/default/clipn.json ]]; then
  echo "pack: note: models/default is not in the tree yet; when committed (~20 MB) the spare shrinks by that much"
fi
if ((total > LIMIT)); then
  echo "pack: OVER the 64 MiB limit: the device run would be refused" >&2
  exit 1
fi

rm -rf .gpu-cuda .gpu-pack/cuda.sha256
if [[ $CUDA == 1 ]]; then
  mkdir -p "$STAGE/cuda"
  # The users' route (cuda-provider.ts): the package matching this onnxruntime-node, version-checked.
  node out/extension/cli/clipn.js cuda-provider --dest "$STAGE/cuda" ${CLIPN_CUDA_TGZ:+--from "$CLIPN_CUDA_TGZ"} | grep '^installed'
  echo "pack: compressing the CUDA provider with xz (x86 BCJ + LZMA2 -9; several minutes)"
  tar -C "$STAGE/cuda" --owner=0 --group=0 --numeric-owner -cf - libonnxruntime_providers_shared.so libonnxruntime_providers_cuda.so |
    $NICE xz -T2 --x86 --lzma2=preset=9 >"$STAGE/cuda.tar.xz"
  # Each part travels beside the working tree alone (1 MiB kept spare for files that change).
  part=$((LIMIT - tree - 1024 * 1024))
  ((part > 4 * 1024 * 1024)) || { echo "pack: the working tree leaves no room for CUDA parts" >&2; exit 1; }
  bash scripts/gpu/parts.sh split "$STAGE/cuda.tar.xz" "$part" .gpu-cuda .gpu-pack/cuda.sha256
  parts=$(ls .gpu-cuda | wc -l)
  echo "pack: CUDA provider $(mib "$(stat -c %s "$STAGE/cuda.tar.xz")") in $parts parts of at most $(mib "$part") (.gpu-cuda/p00..)"
  echo "pack: device plan, calls back to back (the machine is given back after ~30 s idle):"
  echo "        1. carry [.gpu-pack, .gl]          command: ls -la .gpu-pack"
  last=$(ls .gpu-cuda | tail -1)
  n=2
  for f in $(ls .gpu-cuda); do
    if [[ $f == "$last" ]]; then
      echo "        $n. carry [.gpu-cuda/$f]   command: bash scripts/gpu/run.sh   (installs the provider, runs cuda)"
    else
      echo "        $n. carry [.gpu-cuda/$f]   command: ls -la .gpu-cuda"
    fi
    n=$((n + 1))
  done
fi
