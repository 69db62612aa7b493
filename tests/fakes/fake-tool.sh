#!/usr/bin/env bash
# Stand-in for minikube, kubectl, helm and docker in the script tests (symlinked under
# those names). It appends "TOOL ARGS" to FAKE_LOG and answers from FAKE_RULES, a file of
# tab-separated rules: TOOL, a glob matched against the joined args, an exit code, and
# output printed with printf %b (so \n and \t work). The first matching rule wins. An exit
# code written CODE@SECONDS exits only after that long (a command that takes time; with code 0
# its output comes first, like a server that says it listens); one written CODE+once answers
# once, and later calls go on to the next matching rule.
# An output written @PATH is that file's content, byte for byte (e.g. a tar stream).
# Without a match it remembers a little state in FAKE_STATE_DIR, so re-runs behave like
# the real tools: `docker build --label K=V` is what `docker image inspect` prints; `docker
# version` answers amd64; `minikube -p P node list` lists FAKE_STATE_DIR/minikube-nodes (two
# nodes, minikube and minikube-m02, when absent); `minikube -p P image load IMAGE` gives every
# node not named in FAKE_STATE_DIR/minikube-failing-nodes the docker image's label (and still
# succeeds, as minikube does when a node fails), which `minikube -p P ssh -n NODE -- "docker
# image inspect ..."` prints and `... "docker image rm ..."` removes.
# Anything else succeeds silently. It never touches a real cluster or the network.
set -o nounset

tool="$(basename "$0")"
args="$*"
# Keep one log line per call even when an argument holds newlines (python -c scripts).
args="${args//$'\n'/\\n}"
printf '%s %s\n' "$tool" "$args" >>"${FAKE_LOG:?FAKE_LOG must be set}"

if [[ -n "${FAKE_RULES:-}" && -f "$FAKE_RULES" ]]; then
  line=0
  while IFS=$'\t' read -r rule_tool pattern code output; do
    line=$((line + 1))
    [[ "$rule_tool" == "$tool" ]] || continue
    # shellcheck disable=SC2053 # the pattern is a glob on purpose
    if [[ "$args" == $pattern ]]; then
      if [[ "$code" == *+once ]]; then
        grep -qxF "$line" "${FAKE_STATE_DIR:-/nonexistent}/spent-rules" 2>/dev/null && continue
        echo "$line" >>"${FAKE_STATE_DIR:?FAKE_STATE_DIR must be set for +once rules}/spent-rules"
        code="${code%+once}"
      fi
      if [[ "$code" == *@* ]]; then
        # The output comes first, as from a command that says it started, then runs on.
        if [[ "$code" == 0@* && -n "${output:-}" && "$output" != @* ]]; then
          printf '%b\n' "$output"
          output=""
        fi
        # Interruptible, and no orphaned sleep left holding the caller's output pipe.
        sleep "${code#*@}" &
        sleeper=$!
        trap 'kill "$sleeper" 2>/dev/null; exit 143' TERM INT
        wait "$sleeper"
        trap - TERM INT
        code="${code%@*}"
      fi
      if [[ "${output:-}" == @* ]]; then
        cat "${output#@}"
      elif [[ -n "${output:-}" ]]; then
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
nodes() {
  if [[ -f "$state/minikube-nodes" ]]; then
    cat "$state/minikube-nodes"
  else
    printf 'minikube\t192.168.49.2\nminikube-m02\t192.168.49.3\n'
  fi
}
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
  "docker version "*)
    echo amd64
    ;;
  "minikube -p "*)
    # minikube -p PROFILE node list | image load IMAGE | ssh -n NODE -- COMMAND
    case "${3:-} ${4:-}" in
      "node list") nodes ;;
      "image load")
        while IFS=$'\t' read -r node _; do
          grep -qxF "$node" "$state/minikube-failing-nodes" 2>/dev/null && continue
          cp "$state/docker-label" "$state/node-image-$node" 2>/dev/null || true
        done < <(nodes)
        ;;
      "ssh -n")
        node="${5:-}"
        case "${7:-}" in
          "docker image inspect"*)
            if [[ -f "$state/node-image-$node" ]]; then
              printf '%s\r\n' "$(cat "$state/node-image-$node")"
            else
              printf 'Error response from daemon: No such image\r\n'
              exit 1
            fi
            ;;
          "docker image rm"*) rm -f "$state/node-image-$node" ;;
        esac
        ;;
    esac
    ;;
esac
exit 0
