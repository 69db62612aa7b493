#!/usr/bin/env bash
# Stand-in for minikube, kubectl, helm and docker in the script tests (symlinked under
# those names). It appends "TOOL ARGS" to FAKE_LOG and answers from FAKE_RULES, a file of
# tab-separated rules: TOOL, a glob matched against the joined args, an exit code, and
# output printed with printf %b (so \n and \t work). The first matching rule wins. An exit
# code written CODE@SECONDS answers after sleeping that long (a command that takes time).
# Without a match it remembers a little state in FAKE_STATE_DIR, so re-runs behave like
# the real tools: `docker build --label K=V` is what `docker image inspect` prints, and
# `minikube image load A B` is what `minikube image ls` lists (as docker.io/library/A).
# Anything else succeeds silently. It never touches a real cluster or the network.
set -o nounset

tool="$(basename "$0")"
args="$*"
# Keep one log line per call even when an argument holds newlines (python -c scripts).
args="${args//$'\n'/\\n}"
printf '%s %s\n' "$tool" "$args" >>"${FAKE_LOG:?FAKE_LOG must be set}"

if [[ -n "${FAKE_RULES:-}" && -f "$FAKE_RULES" ]]; then
  while IFS=$'\t' read -r rule_tool pattern code output; do
    [[ "$rule_tool" == "$tool" ]] || continue
    # shellcheck disable=SC2053 # the pattern is a glob on purpose
    if [[ "$args" == $pattern ]]; then
      if [[ "$code" == *@* ]]; then
        # Interruptible, and no orphaned sleep left holding the caller's output pipe.
        sleep "${code#*@}" &
        sleeper=$!
        trap 'kill "$sleeper" 2>/dev/null; exit 143' TERM INT
        wait "$sleeper"
        trap - TERM INT
        code="${code%@*}"
      fi
      if [[ -n "${output:-}" ]]; then
        if [[ "$code" == "0" ]]; then
          printf '%b\n' "$output"
        else
          printf '%b\n' "$output" >&2
        fi
      fi
      exit "$code"
    fi
  done <"$FAKE_RULES"
fi

state="${FAKE_STATE_DIR:-}"
[[ -n "$state" ]] || exit 0
case "$tool ${1:-} ${2:-}" in
  "docker build "*)
    while (($# > 0)); do
      if [[ "$1" == "--label" ]]; then
        printf '%s\n' "${2#*=}" >"$state/docker-label"
      fi
      shift
    done
    ;;
  "docker image inspect")
    [[ -f "$state/docker-label" ]] || exit 1
    cat "$state/docker-label"
    ;;
  "minikube -p "*)
    # minikube -p PROFILE image load|ls ...
    if [[ "${3:-} ${4:-}" == "image load" ]]; then
      shift 4
      for image in "$@"; do
        printf 'docker.io/library/%s\n' "$image" >>"$state/minikube-images"
      done
    elif [[ "${3:-} ${4:-}" == "image ls" ]]; then
      cat "$state/minikube-images" 2>/dev/null || true
    fi
    ;;
esac
exit 0
