#!/usr/bin/env bash
# The Python environment of the local scripts: .venv, created and kept in step with the
# requirements files, and the Python that reads lesson/recipe.py. Source it after common.sh.

# The Python interpreter used to create .venv: PYTHON if set, else python3.11, else python3.
find_python() {
  local candidate
  for candidate in "${PYTHON:-}" python3.11 python3; do
    [[ -n "$candidate" ]] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' 2>/dev/null; then
      echo "$candidate"
      return 0
    fi
  done
  die "Python 3.11 was not found (TensorFlow 2.21 and Ray 2.60 wheels are pinned for it). Install it from https://www.python.org/downloads/ or with pyenv, or set PYTHON=/path/to/python3.11."
}

# Create .venv if missing and install a requirements file into it when it changed.
# Usage: ensure_venv requirements.txt|requirements-dev.txt
ensure_venv() {
  local requirements="${1:-requirements.txt}"
  local venv="$REPO_ROOT/.venv"
  local stamp wanted
  stamp="$venv/.installed-$(basename "$requirements" .txt).sha256"
  if [[ ! -x "$venv/bin/python" ]]; then
    local python
    python="$(find_python)"
    log "Creating $venv with $python"
    "$python" -m venv "$venv" || die "Could not create $venv. On Debian/Ubuntu install python3.11-venv."
  fi
  # The stamp covers every requirements file, since the dev file includes the runtime one.
  wanted="$(cat "$REPO_ROOT"/requirements*.txt | sha256sum_portable)"
  # The test tools' file includes the runtime one, so its stamp covers both.
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$wanted" ]] ||
    [[ -f "$venv/.installed-requirements-dev.sha256" && "$(cat "$venv/.installed-requirements-dev.sha256")" == "$wanted" ]]; then
    return 0
  fi
  log "Installing $requirements into .venv (first time: 2-5 minutes, about 3 GB)"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    -r "$REPO_ROOT/$requirements" ||
    die "pip could not install $requirements. Check your network or proxy, then run this script again."
  echo "$wanted" >"$stamp"
}

# A Python that can read lesson/recipe.py (standard library only): .venv's when it
# exists, else PYTHON, python3.11 or python3. The Minikube target needs no .venv for this.
settings_python() {
  local candidate
  for candidate in "$REPO_ROOT/.venv/bin/python" "${PYTHON:-}" python3.11 python3; do
    [[ -n "$candidate" ]] || continue
    if command -v "$candidate" >/dev/null 2>&1; then
      echo "$candidate"
      return 0
    fi
  done
  die "No Python was found to read the defaults in lesson/recipe.py. Install Python 3.11 (https://www.python.org/downloads/) or set PYTHON=/path/to/python3.11."
}
