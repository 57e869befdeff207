#!/usr/bin/env bash
# Fails, naming file:line, when a file under src/ includes a header of a
# higher layer. Bottom to top: util < core < runtime < api < cli; a layer
# may include its own headers and those below. include/corral.h may be
# included anywhere, so it may include none of ours. tests/ and bench/ are
# exempt: they reach into every layer on purpose.
set -uo pipefail
cd "$(dirname "$0")/.."

layers=(util core runtime api cli)
declare -A rank
for i in "${!layers[@]}"; do
  rank[${layers[$i]}]=$i
done
order=$(printf '%s < ' "${layers[@]}")
order=${order% < }

status=0
report() {
  echo "check-layers: $1" >&2
  status=1
}

# The folder of src/ a header path lands in, the way the compiler finds a
# "..." include: next to the includer first, then under src/ (-I src).
# Prints nothing for a system header.
layer_of() {
  local dir=$1 delim=$2 path=$3 target
  if [ "$delim" = '"' ] && { [ "${path#*/}" = "$path" ] || [ -e "$dir/$path" ]; }; then
    target=$(realpath -m --relative-to=. "$dir/$path")
  elif [ "$delim" = '"' ] || [ -n "${rank[${path%%/*}]+x}" ]; then
    target=src/$path
  else
    return
  fi
  case "$target" in
    include/corral.h) echo corral.h ;;
    src/*/*)
      target=${target#src/}
      target=${target%%/*}
      [ -n "${rank[$target]+x}" ] && echo "$target" || echo "?"
      ;;
    *) echo "?" ;;
  esac
}

n=0
while IFS= read -r f; do
  n=$((n + 1))
  own=${f#*/}
  own=${own%%/*}
  if [ "${f%%/*}" = include ]; then
    own=include
  elif [ "$f" = "src/$own" ] || [ -z "${rank[$own]+x}" ]; then
    report "$f: not in a layer folder (src/ has: $order); add its folder to scripts/check-layers.sh"
    continue
  fi
  while IFS=$'\t' read -r line delim path; do
    [ "$path" = corral.h ] && continue
    to=$(layer_of "$(dirname "$f")" "$delim" "$path")
    case "$to" in
      "" | corral.h) ;;
      "?") report "$f:$line: includes $path, which is in no layer ($order)" ;;
      *)
        if [ "$own" = include ]; then
          report "$f:$line: includes $path: include/ is below every layer"
        elif [ "${rank[$to]}" -gt "${rank[$own]}" ]; then
          report "$f:$line: src/$own includes $path, from src/$to above it ($order)"
        fi
        ;;
    esac
  done < <(grep -nE '^[[:space:]]*#[[:space:]]*include[[:space:]]*[<"][^">]+[">]' "$f" |
           sed -E 's/^([0-9]+):[[:space:]]*#[[:space:]]*include[[:space:]]*([<"])([^">]+)[">].*/\1\t\2\t\3/')
done < <(find src include -type f -name '*.[ch]' | sort)

if [ $n -eq 0 ]; then
  echo "check-layers: no sources found under src/" >&2
  exit 1
fi
[ $status -eq 0 ] && echo "check-layers: $n files, no include reaches a higher layer ($order)"
exit $status
