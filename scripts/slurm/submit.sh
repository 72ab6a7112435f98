#!/bin/sh
# submit.sh MANIFEST [N] [-- moonbus batch options]
#
# Submits a catalogue to Slurm: an array of N tasks (default 4) running
# moonbus-batch.sbatch (shard I/N each), and a merge job that starts once
# every task has ended, whatever their state (--dependency=afterany), and runs
#   $MOONBUS batch MANIFEST --merge [--report DIR]
# Prints the two job ids:
#   array 1234
#   merge 1235
# Logs go to the folder you submit from: moonbus-batch-<array>_<task>.log and
# moonbus-merge-<job>.log. sbatch's own environment variables choose the
# rest (SBATCH_PARTITION, SBATCH_ACCOUNT, SBATCH_TIMELIMIT, ...); edit the
# #SBATCH lines of a copy of moonbus-batch.sbatch for anything else, and
# point MOONBUS_SBATCH at it. MOONBUS names the moonbus executable (default:
# moonbus on PATH); it must be the same path on every node.
set -eu

usage() {
  echo "usage: submit.sh MANIFEST [N] [-- moonbus batch options]" >&2
  exit 2
}
[ $# -ge 1 ] || usage
case $1 in -*) usage ;; esac
manifest=$1
shift
n=4
if [ $# -gt 0 ] && [ "$1" != "--" ]; then
  n=$1
  shift
fi
case $n in '' | *[!0-9]* | 0*) usage ;; esac
if [ $# -gt 0 ]; then
  [ "$1" = "--" ] || usage
  shift
fi
[ -f "$manifest" ] || {
  echo "submit.sh: no manifest $manifest" >&2
  exit 2
}

here=$(cd "$(dirname "$0")" && pwd)
script=${MOONBUS_SBATCH:-$here/moonbus-batch.sbatch}

# the merge needs the report folder the shards wrote to
report=
prev=
for o in "$@"; do
  case $prev in --report) report=$o ;; esac
  case $o in --report=*) report=${o#--report=} ;; esac
  prev=$o
done

# a word quoted for sh
q() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }

array=$(sbatch --parsable --array="1-$n" "$script" "$manifest" "$@")
array=${array%%;*}
merge_cmd="exec \"\${MOONBUS:-moonbus}\" batch $(q "$manifest") --merge"
[ -z "$report" ] || merge_cmd="$merge_cmd --report $(q "$report")"
merge=$(sbatch --parsable --job-name=moonbus-merge --dependency="afterany:$array" \
  --kill-on-invalid-dep=yes --output=moonbus-merge-%j.log --wrap "$merge_cmd")
merge=${merge%%;*}
echo "array $array"
echo "merge $merge"
