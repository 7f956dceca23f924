#!/usr/bin/env bash
# Run benchmark cells one at a time in the background and commit each finished cell at once.
#   bash benchmarks/queue.sh "python -m benchmarks.tuning --cell 'fedavg-*'" ... > queue.log 2>&1 &
# Each argument is one command (resumable: finished cells are skipped; `python ...` runs in
# .venv, anything else as it is); after it, every new
# or changed file under benchmarks/results/ (but work/) is committed in one commit.
set -uo pipefail
cd "$(dirname "$0")/.."
for cmd in "$@"; do
  echo "queue: $(date -u +%H:%M:%S) start: $cmd"
  case "$cmd" in python*) .venv/bin/$cmd ;; *) $cmd ;; esac
  echo "queue: $(date -u +%H:%M:%S) end (rc=$?): $cmd"
  files=$(git status --porcelain -- benchmarks/results | grep -v '/work/' | awk '{print $2}')
  [ -z "$files" ] && continue
  for _ in 1 2 3 4 5; do
    git add -- $files && git commit -q -m "benchmark cell: ${cmd#python -m }" -- $files && break
    sleep 5
  done
done
echo "queue: $(date -u +%H:%M:%S) all done"
