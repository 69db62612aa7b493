#!/usr/bin/env bash
# What every script shares: where the repository is, logging, errors, checks of settings,
# the usage text and the one command-line parser. Source it first, do not run it:
#   source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# The other libraries of this folder, each for one job, are sourced after it.

# shellcheck disable=SC2034 # set here, read by the scripts that source this file

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SCRIPTS_DIR="$REPO_ROOT/scripts"
export REPO_ROOT
# The scripts run the code as `python -m lesson...`, which finds the packages only from the
# repository root: this makes them work from any folder (cd docs && ../scripts/test.sh).
export PYTHONPATH="$REPO_ROOT${PYTHONPATH:+:$PYTHONPATH}"
# The code's folders, one Python package each: the image copies them (docker/).
# shellcheck disable=SC2034 # read by the scripts that source this file
CODE_DIRS=(lesson harness analysis tools)
# The flags that choose the recipe's mode, for COMMAND_FLAGS (see parse_common_flags).
MODE_FLAGS=(--smoke-test MODE=smoke --full MODE=full)
MODE="default"

# Print a progress line on stdout, prefixed with the script's name.
log() {
  printf '[%s] %s\n' "$(basename "$0")" "$*"
}

# Print a warning on stderr.
warn() {
  printf '[%s] WARNING: %s\n' "$(basename "$0")" "$*" >&2
}

# Print an error on stderr and exit non-zero. Say what failed and what to do next.
# LAST_ERROR keeps the message for an EXIT trap (close_run_dir writes it into FAILED).
die() {
  LAST_ERROR="$*"
  printf '[%s] ERROR: %s\n' "$(basename "$0")" "$*" >&2
  exit 1
}

# Fail unless a command exists; the second argument says where to get it.
require_tool() {
  local tool="$1" where="$2"
  if ! command -v "$tool" >/dev/null 2>&1; then
    die "'$tool' is not installed or not on PATH. Install it: $where"
  fi
}

# Fail unless the value of a setting is a whole number >= 1.
require_positive_int() {
  local name="$1" value="$2"
  if ! [[ "$value" =~ ^[0-9]+$ ]] || ((10#$value < 1)); then
    die "$name must be a whole number of at least 1, got '$value'."
  fi
}

# Fail unless the value of a setting is a whole number >= 0.
require_non_negative_int() {
  local name="$1" value="$2"
  if ! [[ "$value" =~ ^[0-9]+$ ]]; then
    die "$name must be a whole number (0 or more), got '$value'."
  fi
}

# Fail unless the value of a setting is a whole number from MIN to MAX.
require_int_between() {
  local name="$1" value="$2" min="$3" max="$4"
  if ! [[ "$value" =~ ^[0-9]{1,18}$ ]] || ((10#$value < min || 10#$value > max)); then
    die "$name must be a whole number from $min to $max, got '$value'."
  fi
}

# Fail unless the value of a setting is a TCP port (1-65535).
require_port() {
  require_int_between "$1" "$2" 1 65535
}

# Fail when a setting whose default is not empty is set to an empty value: an empty EPOCHS=
# is a mistake, not a request for the default. Reads the defaults from the running script's
# header (`#   NAME=value`) and the recipe's names (RECIPE_NAMES, recipe.sh).
refuse_empty_settings() {
  local name value
  while read -r name value; do
    if [[ -n "${!name+set}" && -z "${!name}" ]]; then
      die "$name is set but empty. Give it a value, or unset it for its default ($value; see --help): unset $name"
    fi
  done < <(sed -n 's/^#[[:space:]]\{1,\}\([A-Z][A-Z0-9_]*\)=\([^[:space:]]\{1,\}\).*/\1 \2/p' "$0"
    for name in ${RECIPE_NAMES:-}; do echo "$name the recipe's, in --help"; done)
}

# Fail unless ADDRESS is empty or host:port with a valid port. Usage: require_address NAME ADDRESS
require_address() {
  local name="$1" address="$2"
  [[ -n "$address" ]] || return 0
  if ! [[ "$address" =~ ^[A-Za-z0-9._-]+:[0-9]{1,5}$ ]] || ((10#${address##*:} < 1 || 10#${address##*:} > 65535)); then
    die "$name='$address' is not host:port (for example 127.0.0.1:6380). Fix it, or unset $name to start a cluster of this script's own."
  fi
}

# Fail unless the value is one of the allowed words.
require_one_of() {
  local name="$1" value="$2"
  shift 2
  local allowed
  for allowed in "$@"; do
    [[ "$value" == "$allowed" ]] && return 0
  done
  die "$name must be one of: $*; got '$value'."
}

# Print "NAME=value" for each named setting, so a run log shows what was used.
log_settings() {
  local name
  for name in "$@"; do
    log "  $name=${!name-}"
  done
}

# True when something accepts TCP connections at HOST:PORT (giving up after 5 s where
# `timeout` exists; a closed port on a reachable host answers "no" at once).
address_answers() {
  local host="${1%:*}" port="${1##*:}"
  if command -v timeout >/dev/null 2>&1; then
    # shellcheck disable=SC2016 # expanded by the inner bash, from its arguments
    timeout 5 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$host" "$port" 2>/dev/null
  else
    (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null
  fi
}

# sha256 of stdin on Linux (sha256sum) and macOS (shasum).
sha256sum_portable() {
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum | cut -d' ' -f1
  else
    shasum -a 256 | cut -d' ' -f1
  fi
}

# Print the comment block at the top of the running script: what it does and its Usage.
# A line "#   RECIPE: TEXT" there becomes TEXT and then the recipe's settings with their
# defaults, as lesson/recipe.py describes them (recipe_describe, from recipe.sh), so that no
# header restates them.
print_usage() {
  local line
  while IFS= read -r line; do
    line="${line#\#}"
    line="${line# }"
    if [[ "$line" == "  RECIPE: "* ]]; then
      printf '  %s\n' "${line#  RECIPE: }"
      recipe_describe
    else
      printf '%s\n' "$line"
    fi
  done < <(sed -n '2,/^set -o/p' "$0" | sed -e '$d')
}

# The one command-line parser: -h/--help prints the usage and exits; each flag of the
# table COMMAND_FLAGS ("FLAG NAME=VALUE" pairs, e.g. "${MODE_FLAGS[@]}" for --smoke-test
# and --full, which set MODE) sets its variable; anything else fails with a clear message.
# Usage: COMMAND_FLAGS=("${MODE_FLAGS[@]}" --dry-run DRY_RUN=1); parse_common_flags "$@"
parse_common_flags() {
  local argument index assignment
  local -a table=(${COMMAND_FLAGS[@]+"${COMMAND_FLAGS[@]}"})
  for argument in "$@"; do
    case "$argument" in
      -h | --help)
        print_usage
        exit 0
        ;;
    esac
    assignment=""
    for ((index = 0; index + 1 < ${#table[@]}; index += 2)); do
      [[ "${table[index]}" == "$argument" ]] && assignment="${table[index + 1]}"
    done
    [[ -n "$assignment" ]] ||
      die "Unknown argument '$argument'. Run $0 --help for its flags and settings (settings are environment variables)."
    printf -v "${assignment%%=*}" '%s' "${assignment#*=}"
  done
}
