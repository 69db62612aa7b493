#!/usr/bin/env bash
# The bridge to the training recipe of lesson/recipe.py, the one place its settings, their
# defaults and their checks live: the scripts read the recipe's settings from the environment
# (EPOCHS=5 ...), Python resolves and validates them, and the entry points get them as flags.
# Source it after common.sh and venv.sh.
#
# Defines:
#   resolve_recipe MODE [NAME=VALUE...]  sets every recipe setting (DATASET TRAIN_SIZE
#                 TEST_SIZE EPOCHS BATCH_SIZE NUM_WORKERS CPUS_PER_WORKER LEARNING_RATE
#                 LR_SCALING SEED MAX_FAILURES) and RECIPE_FLAGS from the shell's values of
#                 them (empty: the default of MODE, default, smoke or full) and the NAME=VALUE
#                 overrides; a bad value stops the script with Python's message. The first
#                 call keeps what the user gave in GIVEN_<NAME> (empty when unset).
#   training_args baseline|ray|tensorflow_alone RESULTS_DIR [FLAG...]  the command line of an
#                 entry point (the TensorFlow-alone control is harness's) after the interpreter,
#                 in TRAINING_ARGS.
#   checkpoint_flags  --checkpoint (CHECKPOINT=1) and --resume (RESUME=1), in CHECKPOINT_FLAGS.
#   recipe_describe   the recipe's lines of a script's --help.

# shellcheck disable=SC2034 # set here, read by the scripts that source this file

RECIPE_NAMES="DATASET TRAIN_SIZE TEST_SIZE EPOCHS BATCH_SIZE NUM_WORKERS CPUS_PER_WORKER LEARNING_RATE LR_SCALING SEED MAX_FAILURES"
RECIPE_FLAGS=()
RECIPE_GIVEN_KEPT=0

# The flag of lesson.recipe for a mode (default, smoke or full), in MODE_FLAG.
recipe_mode_flag() {
  MODE_FLAG=()
  case "$1" in
    smoke) MODE_FLAG=(--smoke-test) ;;
    full) MODE_FLAG=(--full) ;;
  esac
}

# Resolve and validate the recipe in Python; see the header.
resolve_recipe() {
  local mode="$1" name output
  shift
  local -a settings=()
  recipe_mode_flag "$mode"
  for name in $RECIPE_NAMES; do
    settings+=("$name=${!name-}")
    ((RECIPE_GIVEN_KEPT == 1)) || printf -v "GIVEN_$name" '%s' "${!name-}"
  done
  RECIPE_GIVEN_KEPT=1
  # Later assignments win in env: the overrides come last.
  if ! output="$(cd "$REPO_ROOT" && env "${settings[@]}" "$@" "$(settings_python)" -m lesson.recipe --from-env \
    ${MODE_FLAG[@]+"${MODE_FLAG[@]}"} 2>&1)"; then
    die "${output#recipe: error: }"
  fi
  # NAME=value lines and RECIPE_FLAGS=(...), shell-quoted by lesson/recipe.py.
  eval "$(grep -E '^[A-Z_]+=' <<<"$output")"
}

# The recipe's lines of a script's --help, from lesson/recipe.py (print_usage calls it).
recipe_describe() {
  (cd "$REPO_ROOT" && "$(settings_python)" -m lesson.recipe --describe)
}

# The command line of a training entry point after the interpreter, in the array
# TRAINING_ARGS: the recipe's flags (resolve_recipe first), the results folder, and FLAGs as
# they are (e.g. --data-dir DIR, --address ADDRESS). The one place the scripts build it.
training_args() {
  local entry="$1" results_dir="$2"
  shift 2
  local module
  case "$entry" in
    baseline | ray) module="lesson.${entry}_training" ;;
    tensorflow_alone) module="harness.tensorflow_alone" ;;
    tune) module="lesson.ray_tune" ;;
    *) die "training_args: unknown entry point '$entry' (baseline, ray, tensorflow_alone or tune)." ;;
  esac
  ((${#RECIPE_FLAGS[@]} > 0)) || die "training_args: the recipe is not resolved yet (resolve_recipe first)."
  TRAINING_ARGS=(-m "$module" "${RECIPE_FLAGS[@]}" --results-dir "$results_dir" "$@")
}

# The recipe of a Tune search (run-tune.sh, run-rayjob.sh's JOB=tune): MODE's, with TRAIN_SIZE
# 2048 in the default mode unless set, so that 4 ways of 4 trials take minutes, not an hour.
# Usage: resolve_tune_recipe MODE
resolve_tune_recipe() {
  local -a size=()
  [[ "$1" != default || -n "${TRAIN_SIZE:-}" ]] || size=(TRAIN_SIZE=2048)
  resolve_recipe "$1" ${size[@]+"${size[@]}"}
}

# lesson/ray_tune.py's command line in TRAINING_ARGS: the recipe, the search's settings that
# are set (WAYS, LEARNING_RATES, GLOBAL_BATCHES; lesson/ray_tune.py holds their defaults),
# into RESULTS_DIR, then FLAGs. Usage: tune_args RESULTS_DIR [FLAG...]
tune_args() {
  local results_dir="$1"
  shift
  local -a search=()
  [[ -z "${WAYS:-}" ]] || search+=(--ways "$WAYS")
  [[ -z "${LEARNING_RATES:-}" ]] || search+=(--learning-rates "$LEARNING_RATES")
  [[ -z "${GLOBAL_BATCHES:-}" ]] || search+=(--global-batches "$GLOBAL_BATCHES")
  training_args tune "$results_dir" ${search[@]+"${search[@]}"} "$@"
}

# The Ray run's checkpoint flags, in CHECKPOINT_FLAGS: --checkpoint when CHECKPOINT=1 (a
# checkpoint every epoch), --resume when RESUME=1 (the latest interrupted run goes on).
checkpoint_flags() {
  CHECKPOINT_FLAGS=()
  [[ "${CHECKPOINT:-0}" != 1 ]] || CHECKPOINT_FLAGS+=(--checkpoint)
  [[ "${RESUME:-0}" != 1 ]] || CHECKPOINT_FLAGS+=(--resume)
}
