#!/bin/sh
# parallel.sh MANIFEST [N] [-- moonbus batch options]
#
# Runs a catalogue as N shards (default: this machine's cores) with GNU
# parallel, then merges them:
#   parallel --will-cite -q -j N --joblog JOBLOG \
#     $MOONBUS batch MANIFEST --shard {}/N --jobs 1 [options] ::: $(seq N)
#   $MOONBUS batch MANIFEST --merge [--report DIR]
# The joblog (one line per shard: host, run time, exit value) is written to
# the report folder as parallel-joblog.tsv; `parallel --will-cite
# --retry-failed --joblog JOBLOG`, run from the same folder, re-runs the
# shards that failed. -q keeps paths with spaces whole. The exit status is
# 0 only when every shard and the merge succeeded. MOONBUS names the moonbus
# executable (default: moonbus on PATH). Needs GNU parallel (Debian:
# apt-get install parallel).
#
# Over ssh (hosts that see the same files at the same paths: a shared
# filesystem for the manifest, inputs, outputs and report folder; moonbus
# installed at the same path; passwordless ssh), replace the parallel line
# below with, e.g., one shard per host and 8 workers each:
#   parallel --will-cite -q -S host1,host2 -j 1 --joblog "$joblog" \
#     --workdir "$PWD" "$moonbus" batch "$manifest" --shard {}/"$n" --jobs 8 \
#     "$@" ::: $(seq "$n")
# (-j 1: one shard at a time per host; -S 2/host1 lets host1 take two;
# ":" in the list is this machine. --workdir "$PWD" needs the current
# folder to be on the shared filesystem too.)
set -eu

usage() {
  echo "usage: parallel.sh MANIFEST [N] [-- moonbus batch options]" >&2
  exit 2
}
[ $# -ge 1 ] || usage
case $1 in -*) usage ;; esac
manifest=$1
shift
n=$(nproc 2>/dev/null || echo 2)
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
  echo "parallel.sh: no manifest $manifest" >&2
  exit 2
}
command -v parallel >/dev/null 2>&1 || {
  echo "parallel.sh: GNU parallel is not installed (apt-get install parallel)" >&2
  exit 2
}
moonbus=${MOONBUS:-moonbus}

# the report folder: --report DIR, else <manifest>-qc beside the manifest
report=
prev=
jobs_opt="--jobs 1"
for o in "$@"; do
  case $prev in --report) report=$o ;; esac
  case $o in --report=*) report=${o#--report=} ;; esac
  case $o in -j | --jobs | --jobs=* | -j[0-9]*) jobs_opt= ;; esac
  prev=$o
done
if [ -n "$report" ]; then
  qc=$report
else
  base=$(basename "$manifest")
  qc=$(dirname "$manifest")/${base%.*}-qc
fi
mkdir -p "$qc"
joblog=$qc/parallel-joblog.tsv

rc=0
# shellcheck disable=SC2086 # $jobs_opt is two words or none
parallel --will-cite -q -j "$n" --joblog "$joblog" --line-buffer --tagstring "[{}/$n]" \
  "$moonbus" batch "$manifest" --shard "{}/$n" $jobs_opt "$@" ::: $(seq "$n") || rc=$?
if [ "$rc" -ne 0 ]; then
  echo "parallel.sh: $rc of $n shards failed (see $joblog)" >&2
fi
if [ -n "$report" ]; then
  "$moonbus" batch "$manifest" --merge --report "$report" || rc=1
else
  "$moonbus" batch "$manifest" --merge || rc=1
fi
[ "$rc" -eq 0 ] || exit 1
