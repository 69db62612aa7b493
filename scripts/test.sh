#!/usr/bin/env bash
# Run the whole test suite: unit tests, both trainings on a real local Ray cluster,
# the benchmark script, ShellCheck, manifest checks and the Minikube scripts with fakes.
# Creates .venv and installs requirements-dev.txt first if needed.
#
# Usage: ./scripts/test.sh [pytest arguments]
#   PYTHON=python3.11  the Python 3.11 that creates .venv the first time
#   PYTEST_ARGS=   extra pytest arguments, e.g. "-k compare" (arguments work too)
set -o errexit -o nounset -o pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PYTEST_ARGS="${PYTEST_ARGS:-}"

main() {
  if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
    print_usage
    exit 0
  fi
  ensure_venv requirements-dev.txt
  cd "$REPO_ROOT"
  log "Running the test suite (about 20 minutes on 2 cores)"
  # shellcheck disable=SC2086 # PYTEST_ARGS is a list of words on purpose
  "$REPO_ROOT/.venv/bin/python" -m pytest tests --durations=15 $PYTEST_ARGS "$@"
}

main "$@"
