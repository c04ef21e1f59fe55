#!/usr/bin/env bash
# A file too large for one device call, in parts that each travel in a call of their own, and
# back (pack.sh --cuda splits the CUDA provider; run.sh joins it on the GPU machine).
#
#   bash scripts/gpu/parts.sh split FILE PART_BYTES DIR SUMS   # DIR/p00, p01, ...; SUMS: "sha256 parts bytes"
#   bash scripts/gpu/parts.sh join DIR SUMS OUT                # OUT = the parts in order, checked
#
# join exits 1 with one line naming what is wrong: parts missing (each needs a call that
# carries it) or a reassembled file whose sha256 is not the one split wrote.
set -euo pipefail

case "${1:-}" in
  split)
    [[ $# == 5 ]] || { echo "usage: parts.sh split FILE PART_BYTES DIR SUMS" >&2; exit 2; }
    file=$2 bytes=$3 dir=$4 sums=$5
    rm -rf "$dir" && mkdir -p "$dir"
    split -b "$bytes" -d -a 2 "$file" "$dir/p"
    echo "$(sha256sum "$file" | cut -d' ' -f1) $(ls "$dir" | wc -l) $(stat -c %s "$file")" >"$sums"
    ;;
  join)
    [[ $# == 4 ]] || { echo "usage: parts.sh join DIR SUMS OUT" >&2; exit 2; }
    dir=$2 sums=$3 out=$4
    [[ -f $sums ]] || { echo "no $sums: nothing was split (pack.sh --cuda)"; exit 1; }
    read -r want parts bytes <"$sums"
    have=0
    [[ -d $dir ]] && have=$(ls "$dir" | wc -l)
    if ((have != parts)); then
      echo "$have of $parts parts in $dir ($(ls "$dir" 2>/dev/null | tr '\n' ' ')): each needs a call that carries it"
      exit 1
    fi
    cat "$dir"/p* >"$out"
    got=$(sha256sum "$out" | cut -d' ' -f1)
    if [[ $got != "$want" ]]; then
      echo "parts in $dir do not make the file that was split: sha256 $got, expected $want ($bytes bytes)"
      rm -f "$out"
      exit 1
    fi
    ;;
  *)
    echo "usage: parts.sh split FILE PART_BYTES DIR SUMS | join DIR SUMS OUT" >&2
    exit 2
    ;;
esac
