#!/usr/bin/env bash
# Run the whole test suite: unit tests, both trainings on a real local Ray cluster,
# the benchmark script, ShellCheck, manifest checks and the Minikube scripts with fakes.
# Creates .venv and installs requirements-dev.txt first if needed.
#
# Usage: ./scripts/test.sh [pytest arguments]
#   PYTHON=python3.11  the Python 3.11 that creates .venv the first time
#   TEST_WORKERS=3     pytest-xdist workers (on 2 cores too): the static tests run while the
#                      real Ray runs wait for their processes; the tests of one shared cluster
#                      or run stay on one worker (tests/conftest.py); 0 runs everything in order
#   PYTEST_ARGS=       extra pytest arguments, e.g. "-k compare" (arguments work too)
set -o errexit -o nounset -o pipefail

# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source=scripts/lib/venv.sh
source "$SCRIPTS_DIR/lib/venv.sh"

PYTEST_ARGS="${PYTEST_ARGS:-}"
TEST_WORKERS="${TEST_WORKERS:-3}"

main() {
  if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
    print_usage
    exit 0
  fi
  require_non_negative_int TEST_WORKERS "$TEST_WORKERS"
  ensure_venv requirements-dev.txt
  cd "$REPO_ROOT"
  local -a parallel=()
  ((TEST_WORKERS == 0)) || parallel=(-n "$TEST_WORKERS" --dist loadgroup)
  log "Running the test suite (its measured time on 2 cores: AGENTS.md, How to test)"
  # shellcheck disable=SC2086 # PYTEST_ARGS is a list of words on purpose
  "$REPO_ROOT/.venv/bin/python" -m pytest tests ${parallel[@]+"${parallel[@]}"} --durations=15 $PYTEST_ARGS "$@"
}

main "$@"
