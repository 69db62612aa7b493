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

# Create .venv if missing and install a requirements file into it when it changed. pip's
# output goes whole to .venv/pip-install.log and, condensed, to the terminal (see
# show_pip_progress), so that the minutes of a first install can be followed.
# Usage: ensure_venv requirements.txt|requirements-dev.txt
ensure_venv() {
  local requirements="${1:-requirements.txt}"
  local venv="$REPO_ROOT/.venv"
  local stamp wanted created=0
  stamp="$venv/.installed-$(basename "$requirements" .txt).sha256"
  if [[ ! -x "$venv/bin/python" ]]; then
    local python
    python="$(find_python)"
    log "Creating $venv with $python"
    "$python" -m venv "$venv" || die "Could not create $venv. On Debian/Ubuntu install python3.11-venv."
    created=1
  fi
  # The stamp covers every requirements file, since the dev file includes the runtime one.
  wanted="$(cat "$REPO_ROOT"/requirements*.txt | sha256sum_portable)"
  # The test tools' file includes the runtime one, so its stamp covers both.
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$wanted" ]] ||
    [[ -f "$venv/.installed-requirements-dev.sha256" && "$(cat "$venv/.installed-requirements-dev.sha256")" == "$wanted" ]]; then
    return 0
  fi
  local installed=0 any
  for any in "$venv"/.installed-*.sha256; do
    [[ ! -e "$any" ]] || installed=1
  done
  if ((created)); then
    log "Installing $requirements into the new .venv: minutes and gigabytes the first time (GETTING_STARTED.md, step 2, has the measured figures). pip's progress follows."
  elif ((!installed)); then
    log "Installing $requirements into .venv, whose first install did not finish: minutes and gigabytes (GETTING_STARTED.md, step 2). pip's progress follows."
  else
    log "Updating the existing .venv with $requirements (a requirements file changed, or these packages were never installed into it): pip installs only what is missing."
  fi
  install_requirements "$venv" "$requirements" ||
    die "pip could not install $requirements (its last lines are above; all of them in .venv/pip-install.log). Check your network or proxy, then run this script again."
  echo "$wanted" >"$stamp"
}

# pip install -r REQUIREMENTS into VENV: the whole output into VENV/pip-install.log, the
# progress on the terminal; on failure pip's last lines go to stderr. Returns pip's status.
install_requirements() {
  local venv="$1" requirements="$2" status=0
  local pip_log="$venv/pip-install.log"
  touch "$venv/.pip-install-started"
  # pip's status, whether or not the caller set pipefail and errexit.
  {
    PYTHONUNBUFFERED=1 "$venv/bin/python" -m pip install --disable-pip-version-check --progress-bar off \
      -r "$REPO_ROOT/$requirements" 2>&1 | tee "$pip_log" | show_pip_progress "$venv"
    status="${PIPESTATUS[0]}"
  } || true
  ((status == 0)) || tail -n 15 "$pip_log" >&2
  return "$status"
}

# pip's output, condensed (condense_pip_line), and, while pip is silent for
# PIP_PROGRESS_SECONDS (10; bash 4 or later), a line saying how far it is: while it installs,
# the packages already in place in .venv and the latest of them.
show_pip_progress() {
  local venv="$1" line="" pending="" start=$SECONDS
  local -a wait_for=()
  ((BASH_VERSINFO[0] < 4)) || wait_for=(-t "${PIP_PROGRESS_SECONDS:-10}")
  # Read by condense_pip_line: what pip is doing, and how many packages it installs.
  PIP_PHASE="resolving the requirements"
  PIP_TOTAL=""
  # Made by the caller before pip starts: a package pip puts in place is newer than it.
  local marker="$venv/.pip-install-started"
  while :; do
    if IFS= read -r ${wait_for[@]+"${wait_for[@]}"} line; then
      condense_pip_line "$start" "$pending$line"
      pending=""
    elif (($? > 128)); then
      # A timeout; the part of a line read so far waits for the rest of it.
      pending+="$line"
      if [[ "$PIP_PHASE" == installing ]]; then
        pip_progress "$start" "installing: $(packages_in_place "$venv" "$marker" "$PIP_TOTAL")"
      else
        pip_progress "$start" "still $PIP_PHASE"
      fi
    else
      break
    fi
  done
  rm -f "$marker"
}

# One line of pip's output on the terminal, condensed: a line per package collected, one per
# download of 10 MB or more, one when the install step starts, with its package count, and
# pip's errors and warnings whole; the rest (cached files, satisfied requirements) is left out.
condense_pip_line() {
  local start="$1" line="$2"
  if [[ "$line" =~ Downloading\ ([^ ]+)\.whl\ \(([0-9]+)(\.[0-9]+)?\ (MB|GB)\) ]]; then
    if [[ "${BASH_REMATCH[4]}" == GB ]] || ((BASH_REMATCH[2] >= 10)); then
      # A wheel's file name (a package index other than PyPI gives its whole URL) to its package.
      local package="${BASH_REMATCH[1]##*/}"
      pip_progress "$start" "downloading ${package%%-*} (${BASH_REMATCH[2]}${BASH_REMATCH[3]} ${BASH_REMATCH[4]})"
    fi
    return 0
  fi
  case "$line" in
    Collecting\ *)
      PIP_PHASE="collecting the packages"
      pip_progress "$start" "collecting ${line#Collecting }"
      ;;
    "Installing collected packages: "*)
      line="${line#*: }"
      PIP_TOTAL="$(($(tr -cd , <<<"$line" | wc -c) + 1))"
      PIP_PHASE="installing"
      pip_progress "$start" "installing $PIP_TOTAL packages into .venv (the longest step: a line every ${PIP_PROGRESS_SECONDS:-10} s)"
      ;;
    "Successfully installed "*) pip_progress "$start" "done" ;;
    ERROR:* | WARNING:*) printf '%s\n' "$line" ;;
  esac
}

# One progress line, with the time since START (seconds of $SECONDS).
pip_progress() {
  local elapsed=$((SECONDS - $1))
  log "$(printf 'pip %d:%02d %s' $((elapsed / 60)) $((elapsed % 60)) "$2")"
}

# How many of TOTAL packages pip has put in place in VENV since MARKER was made, and the latest.
packages_in_place() {
  local venv="$1" marker="$2" total="$3" count=0 latest="" folder
  for folder in "$venv"/lib/python*/site-packages/*.dist-info; do
    [[ "$folder" -nt "$marker" ]] || continue
    count=$((count + 1))
    [[ -n "$latest" && ! "$folder" -nt "$latest" ]] || latest="$folder"
  done
  latest="$(basename "$latest" .dist-info)"
  printf '%s of %s packages in place%s' "$count" "$total" "${latest:+ (the latest: $latest)}"
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
