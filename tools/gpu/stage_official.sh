#!/usr/bin/env bash
# stage_official.sh DEST — copies the few files of the official code that tools/gpu/official_bench.py
# imports into DEST (default .gpu/official), at pinned commits:
#   DEST/DiT/{models.py,diffusion/,LICENSE.txt,COMMIT}                 facebookresearch/DiT
#   DEST/ToCa/DiT-ToCa/{models.py,diffusion/,cache_functions/,COMMIT}  Shenyi-Z/ToCa (+ DEST/ToCa/LICENSE)
# Where the code comes from, per repository (DiT, then ToCa):
#   OFFICIAL_DIT_SRC / OFFICIAL_TOCA_SRC = a git checkout, a bare git directory (git archive of the
#       pinned commit, or of HEAD when the commit is not in it), or a plain folder holding the files
#       (for ToCa: the repository root or its DiT-ToCa folder);
#   unset: a blobless git clone into .gpu/src/ (needs network).
# A folder already staged at the same commit is left as it is. Nothing here is committed (.gpu/ is
# git-ignored); the official code keeps its own licence (DiT: CC BY-NC 4.0).
set -euo pipefail

DEST=${1:-.gpu/official}
DIT_REV=${OFFICIAL_DIT_REV:-ed81ce2229091fd4ecc9a223645f95cf379d582b}
TOCA_REV=${OFFICIAL_TOCA_REV:-e84096ffd85af4540a6a1f64e3334e428e1b7377}
DIT_URL=${OFFICIAL_DIT_URL:-https://github.com/facebookresearch/DiT.git}
TOCA_URL=${OFFICIAL_TOCA_URL:-https://github.com/Shenyi-Z/ToCa.git}

die() { echo "stage_official: $*" >&2; exit 1; }

# gitdir SRC: prints the git directory of SRC (bare or work tree), or nothing.
gitdir() {
	local src=$1
	if [ -d "$src/.git" ] || [ -f "$src/.git" ]; then git -C "$src" rev-parse --absolute-git-dir
	elif [ -f "$src/HEAD" ] && [ -d "$src/objects" ]; then (cd "$src" && pwd)
	fi
}

# stage NAME SRC URL REV OUT PREFIX PATHS...: extracts PREFIX/PATHS of REV into OUT (PREFIX stripped).
stage() {
	local name=$1 src=$2 url=$3 rev=$4 out=$5 prefix=$6
	shift 6
	if [ -f "$out/COMMIT" ] && [ "$(cat "$out/COMMIT")" = "$rev" ]; then
		echo "stage_official: $name already staged at $rev in $out"
		return
	fi
	if [ -z "$src" ]; then
		src=.gpu/src/$name
		if [ ! -d "$src" ]; then
			echo "stage_official: cloning $url into $src (set OFFICIAL_${name^^}_SRC to use a local copy)"
			git clone -q --filter=blob:none --no-checkout "$url" "$src" || die "git clone $url failed (no network? set OFFICIAL_${name^^}_SRC)"
		fi
	fi
	[ -e "$src" ] || die "$src: no such file or directory"
	rm -rf "$out" && mkdir -p "$out"
	local gd used=$rev
	gd=$(gitdir "$src")
	if [ -n "$gd" ]; then
		if ! git --git-dir="$gd" cat-file -e "$rev^{commit}" 2>/dev/null; then
			used=$(git --git-dir="$gd" rev-parse HEAD)
			echo "stage_official: warning: $rev is not in $src; staging its HEAD $used" >&2
		fi
		# Archive the PREFIX tree itself: the paths come out relative to it.
		git --git-dir="$gd" archive "$used${prefix:+:$prefix}" "$@" | tar -x -C "$out"
		echo "$used" >"$out/COMMIT"
	else
		# A plain folder: the repository root (PREFIX inside it) or the PREFIX folder itself.
		local base=$src
		[ -n "$prefix" ] && [ -d "$src/$prefix" ] && base=$src/$prefix
		for p in "$@"; do
			[ -e "$base/$p" ] || { [ "$p" = LICENSE ] || [ "$p" = LICENSE.txt ]; } || die "$base/$p: missing"
			[ -e "$base/$p" ] && cp -r "$base/$p" "$out/"
		done
		find "$out" -name __pycache__ -prune -exec rm -rf {} +
		if [ -f "$base/COMMIT" ]; then cp "$base/COMMIT" "$out/COMMIT"; else echo "unknown (copied from $src)" >"$out/COMMIT"; fi
	fi
	echo "stage_official: $name $(cat "$out/COMMIT") -> $out ($(du -sh "$out" | cut -f1))"
}

stage dit "${OFFICIAL_DIT_SRC:-}" "$DIT_URL" "$DIT_REV" "$DEST/DiT" "" models.py diffusion LICENSE.txt
stage toca "${OFFICIAL_TOCA_SRC:-}" "$TOCA_URL" "$TOCA_REV" "$DEST/ToCa/DiT-ToCa" DiT-ToCa models.py diffusion cache_functions
# ToCa's licence sits at its root, outside DiT-ToCa.
if [ ! -f "$DEST/ToCa/LICENSE" ]; then
	src=${OFFICIAL_TOCA_SRC:-.gpu/src/toca}
	gd=$(gitdir "$src" || true)
	if [ -n "$gd" ]; then
		git --git-dir="$gd" show "$(cat "$DEST/ToCa/DiT-ToCa/COMMIT"):LICENSE" >"$DEST/ToCa/LICENSE" 2>/dev/null || rm -f "$DEST/ToCa/LICENSE"
	elif [ -f "$src/LICENSE" ]; then
		cp "$src/LICENSE" "$DEST/ToCa/LICENSE"
	fi
fi
