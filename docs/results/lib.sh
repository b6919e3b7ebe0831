# Shell functions shared by the reproduce scripts (source it from the repository root).
#
# A run is skipped when its collected copy in docs/results/ already holds the files the script makes, so a
# fresh machine (runs/ empty) trains only what has not been committed yet. Within runs/, every step resumes:
# a finished training is not started again (that would add a line to its command.txt) and an existing
# evaluation is not recomputed.

D=${D:-../shared/datasets}

# collected DEST FILE...: true when DEST holds every FILE.
collected() {
  local dest=$1 f; shift
  for f in "$@"; do [ -f "$dest/$f" ] || return 1; done
}

# train OUT RECIPE ARG...: `tfrobust train RECIPE ARG... --output OUT` unless OUT holds a finished model.
train() {
  local out=$1 recipe=$2; shift 2
  [ -f "$out/model.keras" ] || tfrobust train "$recipe" --data-dir "$D" "$@" --output "$out"
}

# evaluate OUT FILE ARG...: `tfrobust eval OUT ARG... --json OUT/FILE` unless OUT/FILE exists.
evaluate() {
  local out=$1 file=$2; shift 2
  [ -f "$out/$file" ] || tfrobust eval "$out" --data-dir "$D" "$@" --json "$out/$file"
}

# check_parts "PARTS" ALLOWED...: exits with an error naming any part of PARTS not among ALLOWED.
check_parts() {
  local parts=$1 p; shift
  for p in $parts; do
    [[ " $* " == *" $p "* ]] || { echo "unknown part '$p'; the parts are: $*" >&2; exit 2; }
  done
}

# files_in "DIRS" FILE: the comma-separated paths DIR/FILE for each DIR of DIRS (globs expanded), for `tfrobust compare`.
files_in() {
  local dir out=
  for dir in $1; do out="$out${out:+,}$dir/$2"; done
  echo "$out"
}
