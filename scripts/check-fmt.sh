#!/usr/bin/env bash
# Fails when a tracked C file differs from what clang-format (.clang-format,
# clang-format 14 as Debian 12 ships it) makes of it, listing those files.
# `make fmt` rewrites them; this only reads.
set -uo pipefail
cd "$(dirname "$0")/.."

if ! command -v clang-format >/dev/null; then
  echo "check-fmt: clang-format not found (scripts/deps.sh installs it)" >&2
  exit 1
fi
if ! git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  echo "check-fmt: not a git checkout: the files to check are git's" >&2
  exit 1
fi

# One file per run, so that each drifting file is named exactly once.
drift=()
while IFS= read -r -d '' f; do
  clang-format --dry-run --Werror "$f" >/dev/null 2>&1 || drift+=("$f")
done < <(git ls-files -z '*.c' '*.h')

if [ ${#drift[@]} -gt 0 ]; then
  echo "check-fmt: ${#drift[@]} file(s) not clang-formatted (make fmt fixes them):" >&2
  printf '  %s\n' "${drift[@]}" >&2
  exit 1
fi
echo "check-fmt: all C files clang-formatted"
