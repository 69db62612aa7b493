#!/usr/bin/env bash
# The diagnostics bundle of a failed Minikube run (scripts/first-run-minikube.sh): the step that
# failed and the tail of its output, the tools' versions, the nodes, the pods of every
# namespace, the events, the logs of the KubeRay operator, the Ray heads and workers, and the
# tail of `minikube logs`. Every collecting command may fail (the cluster may be the thing that
# is broken): its failure is noted in SUMMARY.txt and the next one runs. Everything written
# goes through mask_secrets first, so the bundle can be attached to an issue as it is. Source
# it after common.sh and k8s.sh (load_k8s_settings).

# Seconds one collecting command may take, where `timeout` exists (a dead cluster can hang).
readonly DIAGNOSTICS_COMMAND_TIMEOUT=60

# Filter stdin to stdout, replacing what looks like a secret with <masked>: the value of any
# key that names a token, password, secret or access key (RAY_AUTH_TOKEN=..., auth_token: ...,
# admin-password: ..., "password": "...", GF_SECURITY_ADMIN_PASSWORD=...), a Bearer token, the
# value line after `- name: SOMETHING_TOKEN` (a pod's env), and every value of a YAML `data:`,
# `stringData:` or `binaryData:` block and of a JSON "data":{...} (a Secret's base64 data).
mask_secrets() {
  awk -v quote="'" '
    BEGIN {
      secret_key = "[a-z0-9_.-]*(token|passw(or)?d|secret|access[_-]?key|api[_-]?key)[a-z0-9_.-]*"
      key_value = secret_key "[\"" quote "]?[ \t]*[:=][ \t]*[\"" quote "]?"
      # An unquoted value ends at a blank, a quote or a separator; a quoted one at its quote.
      value = "^[^\"" quote " \t,;]+"
      env_name = "^[ \t]*-?[ \t]*name:[ \t]*[\"" quote "]?" secret_key "[\"" quote "]?[ \t]*$"
    }
    # Replace the value after every match of PATTERN in LINE (matched in lower case): up to
    # its closing quote, a list whole; a { opens an object, whose own keys are looked at next.
    function mask_after(line, pattern,    lower, out, end, opened, found) {
      out = ""
      lower = tolower(line)
      while (match(lower, pattern)) {
        end = RSTART + RLENGTH - 1
        opened = substr(lower, end, 1)
        out = out substr(line, 1, end)
        line = substr(line, end + 1)
        lower = substr(lower, end + 1)
        if (opened == "\"" || opened == quote) {
          found = match(lower, "^[^" opened "]+")
        } else if (substr(lower, 1, 1) == "[") {
          found = match(lower, /^\[[^]]*]/)
        } else {
          found = substr(lower, 1, 1) != "{" && match(lower, value)
        }
        if (found) {
          out = out "<masked>"
          line = substr(line, RLENGTH + 1)
          lower = substr(lower, RLENGTH + 1)
        }
      }
      return out line
    }
    # The text of a YAML line after its key, or -1 when the line is no "key: value" line.
    function value_start(line) {
      return match(line, /^[ \t]*-?[ \t]*[^: \t][^:]*:[ \t]+[^ \t]/) ? RSTART + RLENGTH - 1 : -1
    }
    {
      line = $0
      indent = match(line, /[^ ]/) - 1
      if (env_value && line ~ /^[ \t]*value:[ \t]*[^ \t]/) {
        line = substr(line, 1, value_start(line) - 1) "<masked>"
      } else if (in_data && (indent > data_indent || line ~ /^[ \t]*$/)) {
        if (value_start(line) > 0) line = substr(line, 1, value_start(line) - 1) "<masked>"
      } else {
        in_data = 0
        if (line ~ /^[ \t]*-?[ \t]*(data|stringData|binaryData):[ \t]*$/) {
          in_data = 1
          data_indent = indent
        }
      }
      env_value = (tolower(line) ~ env_name)
      rest = line
      line = ""
      while (match(tolower(rest), /"(data|stringdata|binarydata)":[ \t]*\{[^}]*\}/)) {
        line = line substr(rest, 1, RSTART - 1) "\"data\":{<masked>}"
        rest = substr(rest, RSTART + RLENGTH)
      }
      line = line rest
      line = mask_after(line, key_value)
      line = mask_after(line, "bearer[ \t]+")
      print line
    }
  '
}

# Run a command with a time limit where `timeout` exists.
bounded() {
  if command -v timeout >/dev/null 2>&1; then
    timeout "$DIAGNOSTICS_COMMAND_TIMEOUT" "$@"
  else
    "$@"
  fi
}

# Append "$ COMMAND", then the last LINES lines of its output (0: all of it), masked, to
# BUNDLE/FILE; note in BUNDLE/SUMMARY.txt whether it worked. Never fails.
# Usage: collect BUNDLE FILE LINES COMMAND...
collect() {
  local bundle="$1" file="$2" lines="$3" status=0
  shift 3
  printf '$ %s\n' "$*" >>"$bundle/$file"
  if bounded "$@" 2>&1 | { if ((lines > 0)); then tail -n "$lines"; else cat; fi; } |
    mask_secrets >>"$bundle/$file"; then
    printf '  %-16s %-14s %s\n' ok "$file" "$*" >>"$bundle/SUMMARY.txt"
  else
    status="${PIPESTATUS[0]}"
    printf '(this command failed with exit status %s; its output, if any, is above)\n' "$status" >>"$bundle/$file"
    printf '  %-16s %-14s %s\n' "FAILED (exit $status)" "$file" "$*" >>"$bundle/SUMMARY.txt"
  fi
  printf '\n' >>"$bundle/$file"
  return 0
}

# Write the bundle into BUNDLE (a new folder) and BUNDLE.tar.gz: the failed STEP, its exit
# STATUS and COMMAND, the last LINES lines of its output (STEP_LOG), and the cluster's state.
# Usage: write_diagnostics BUNDLE STEP STATUS COMMAND STEP_LOG LINES
write_diagnostics() {
  local bundle="$1" step="$2" status="$3" command="$4" step_log="$5" lines="$6"
  local kube=(kubectl --context "$MINIKUBE_PROFILE" --request-timeout=20s)
  mkdir -p "$bundle" || return 0
  {
    printf 'Diagnostics of a failed first run, written %s.\n' "$(date '+%Y-%m-%d %H:%M:%S %z')"
    printf 'Failed step: %s (exit status %s)\nIts command: %s\n' "$step" "$status" "$command"
    printf 'Secrets (tokens, passwords, Secret data) are masked as <masked> in every file.\n\n'
    printf 'What was collected (a command that failed is noted, and the next one ran):\n'
  } >"$bundle/SUMMARY.txt"
  {
    printf 'Step %s failed with exit status %s.\n$ %s\nThe last %s lines of its output:\n\n' \
      "$step" "$status" "$command" "$lines"
    tail -n "$lines" "$step_log" 2>/dev/null | mask_secrets || true
  } >"$bundle/failed-step.txt"
  collect "$bundle" versions.txt 0 minikube version
  collect "$bundle" versions.txt 0 kubectl version --client
  collect "$bundle" versions.txt 0 helm version --short
  collect "$bundle" versions.txt 0 docker version
  collect "$bundle" nodes.txt 0 "${kube[@]}" get nodes -o wide
  collect "$bundle" pods.txt 0 "${kube[@]}" get pods --all-namespaces -o wide
  collect "$bundle" ray.txt 0 "${kube[@]}" get rayclusters,rayjobs --all-namespaces
  collect "$bundle" events.txt "$lines" "${kube[@]}" get events --all-namespaces --sort-by=.lastTimestamp
  collect "$bundle" operator.log "$lines" "${kube[@]}" --namespace "$OPERATOR_NAMESPACE" \
    logs deployment/kuberay-operator --all-containers --tail="$lines"
  # Every Ray cluster's pods: the RayCluster's, and a RayJob's, whose name is made per run.
  collect "$bundle" head.log 0 "${kube[@]}" --namespace "$RAY_NAMESPACE" \
    logs --selector ray.io/node-type=head --all-containers --prefix --tail="$lines"
  collect "$bundle" workers.log 0 "${kube[@]}" --namespace "$RAY_NAMESPACE" \
    logs --selector ray.io/node-type=worker --all-containers --prefix --tail="$lines"
  collect "$bundle" minikube.log "$lines" minikube -p "$MINIKUBE_PROFILE" logs --length "$lines"
  tar -C "$(dirname "$bundle")" -czf "$bundle.tar.gz" "$(basename "$bundle")" 2>/dev/null ||
    warn "Could not pack $bundle into $bundle.tar.gz; the folder holds the same files."
}
