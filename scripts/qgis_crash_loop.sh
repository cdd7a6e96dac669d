#!/usr/bin/env bash
# Issue 20's evidence: the QGIS test sequence that once crashed (desktop, dock, non-file layers, in
# that order, no random order, Python's fault handler on), N times; one log per run and a summary.
#
#   scripts/qgis_crash_loop.sh [N=20] [OUT=build/qgis_loop]
#
# Figures, not a test: it exits 0 and says how many runs passed (a crash shows as exit 139 and a
# "Fatal Python error" in that run's log). Run it on an idle machine: ~2 min per run on 2 cores.
set -u
cd "$(dirname "$0")/.."
N=${1:-20}
OUT=${2:-build/qgis_loop}
mkdir -p "$OUT"
export QT_QPA_PLATFORM=offscreen
passed=0
for i in $(seq 1 "$N"); do
  start=$(date +%s)
  .venv/bin/python -X faulthandler -m pytest -p no:randomly -p no:cacheprovider -q \
      tests/qgis/test_desktop.py tests/qgis/test_dock.py tests/qgis/test_nonfile_layers.py > "$OUT/run_$i.log" 2>&1
  rc=$?
  [ "$rc" -eq 0 ] && passed=$((passed + 1))
  echo "run $i: exit $rc, $(( $(date +%s) - start )) s, $(tail -1 "$OUT/run_$i.log")" | tee -a "$OUT/summary.txt"
done
echo "$passed of $N runs passed; faults: $(grep -l 'Fatal Python error' "$OUT"/run_*.log 2>/dev/null | wc -l)" | tee -a "$OUT/summary.txt"
