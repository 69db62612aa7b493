#!/usr/bin/env bash
# Stand-in for python3.11 and .venv/bin/python in the tests of scripts/lib/venv.sh; it never
# installs anything. It appends "python ARGS" to FAKE_LOG, passes the version check (-c ...),
# makes a .venv with `-m venv DIR` (whose bin/python is this script), and plays `-m pip
# install` from FAKE_PIP_SCRIPT, a file of lines: `sleep S` waits S seconds, `install NAME`
# creates NAME.dist-info in the venv's site-packages (as pip does once a package is in
# place), any other line is printed as pip's output. It then exits FAKE_PIP_EXIT (0).
set -o nounset

printf 'python %s\n' "$*" >>"${FAKE_LOG:?FAKE_LOG must be set}"
case "${1:-} ${2:-}" in
  "-m venv")
    mkdir -p "$3/bin" "$3/lib/python3.11/site-packages"
    ln -s "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")" "$3/bin/python"
    ;;
  "-m pip")
    site_packages="$(cd "$(dirname "$0")/.." && pwd)/lib/python3.11/site-packages"
    while IFS= read -r line; do
      case "$line" in
        "sleep "*) sleep "${line#sleep }" ;;
        "install "*) mkdir -p "$site_packages/${line#install }.dist-info" ;;
        *) printf '%s\n' "$line" ;;
      esac
    done <"${FAKE_PIP_SCRIPT:-/dev/null}"
    exit "${FAKE_PIP_EXIT:-0}"
    ;;
esac
exit 0
