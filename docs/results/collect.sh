#!/bin/bash
# Copies a run's small result files into docs/results, never its checkpoints or model:
#   docs/results/collect.sh RUN_DIR DEST_DIR
# Copied: the top-level .json, .csv, .txt and .png files of RUN_DIR (recipe.json, command.txt, history.csv,
# eval*.json, plots). `tfrobust compare DEST_DIR...` then works on the copies: the seed is in recipe.json.
set -e
[ $# -eq 2 ] && [ -d "$1" ] || { echo "usage: $0 RUN_DIR DEST_DIR" >&2; exit 2; }
mkdir -p "$2"
find "$1" -maxdepth 1 -type f \( -name '*.json' -o -name '*.csv' -o -name '*.txt' -o -name '*.png' \) -size -2M \
  -exec cp {} "$2/" \;
ls "$2"
