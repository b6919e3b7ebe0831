#!/bin/bash
# Copies a run's small result files into docs/results, never its checkpoints or model:
#   docs/results/collect.sh RUN_DIR DEST_DIR
# Copied: the top-level .json, .csv, .txt and .png files of RUN_DIR (recipe.json, command.txt, history.csv,
# eval*.json, plots), each overwriting its namesake in DEST_DIR; a file over 2 MB is skipped with a warning.
# `tfrobust compare DEST_DIR...` then works on the copies: the seed is in eval.json and recipe.json.
set -e
[ $# -eq 2 ] && [ -d "$1" ] || { echo "usage: $0 RUN_DIR DEST_DIR" >&2; exit 2; }
mkdir -p "$2"
for f in "$1"/*.json "$1"/*.csv "$1"/*.txt "$1"/*.png; do
  [ -f "$f" ] || continue
  if [ "$(stat -c %s "$f")" -gt 2097152 ]; then
    echo "skipped $f: over 2 MB" >&2
  else
    cp "$f" "$2/"
  fi
done
ls "$2"
