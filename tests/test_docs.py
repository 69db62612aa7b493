"""The docs teach only what the code does: every command, flag, setting, path and number in them is checked.

Documents: README.md, GETTING_STARTED.md, AGENTS.md and every docs/*.md.

- Every fenced shell command (```bash, ```sh, ```shell, ```console) and every command quoted
  inline in backticks is parsed: a `./scripts/X.sh` (or `./scripts/experiments/X.sh`) or
  `docker/X.sh` must exist, each of its
  `--flags`, subcommands and `NAME=value` settings must appear in its `--help`; a
  `python -m lesson.X` (or harness, analysis, tools) must exist and accept its flags (its `--help`); commands of other
  tools (kubectl, minikube, helm, ray, docker) are accepted, but the Ray and KubeRay names
  they use (ray-training-cluster, ray-system, ray-head-nodeport, ...) must exist in k8s/ or
  scripts/. Commands that only print (`--help`, `--dry-run`) are run.
- Every repo path, script or module file name and setting name in backticks exists.
- Links to Ray go to https://docs.ray.io/en/latest/... or https://github.com/ray-project/...,
  and the README links the pages the demo builds on.
- Numbers come from the committed run in docs/results/quickstart/: the README's comparison
  table is the one analysis/compare.py prints for that comparison.json, and every speedup,
  throughput, accuracy, time and duration quoted in the docs is one of that run's values.
- One set of times: wherever the docs, the docstrings or the script headers quote the time of a
  measured step (the .venv install, the default benchmark, the test suite) it is the time of
  docs/results/quickstart/timings.json, in words neither ("about 7 minutes") nor another
  machine's unless named; steps with no committed run (the smoke test) get no time. Their one
  place is GETTING_STARTED.md; the other places repeat it or link to it.

Static and quick: reads files and runs only `--help` / `--dry-run`, which start nothing.
"""

import ast
import concurrent.futures
import glob
import json
import os
import re
import shlex
import statistics
import subprocess
import sys

import pytest

from analysis import compare, report, targets
from harness import results

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = ("README.md", "GETTING_STARTED.md", "AGENTS.md") + tuple(
    sorted(os.path.relpath(path, REPO_ROOT) for path in glob.glob(os.path.join(REPO_ROOT, "docs", "*.md"))))
QUICKSTART_DIR = os.path.join(REPO_ROOT, "docs", "results", "quickstart")
SCALING_DIR = os.path.join(REPO_ROOT, "docs", "results", "scaling")
SHELL_LANGUAGES = {"bash", "sh", "shell", "console"}
PATH_PREFIXES = ("lesson", "harness", "analysis", "tools", "scripts", "k8s", "docker", "docs", "tests", ".ci")
PATH_PATTERN = re.compile(r"^(?:\./)?(?:%s)/[\w./<>*-]*$" % "|".join(re.escape(p) for p in PATH_PREFIXES))
SCRIPT_PATTERN = re.compile(r"^(?:\./)?(?:scripts/(?:experiments/)?|docker/)[\w.-]+\.sh$")
# An inline `...` span that is a command: settings, then a script or a training module.
INLINE_COMMAND = re.compile(r"^(?:[A-Z_][A-Z0-9_]*=\S*\s+)*(?:(?:\./)?(?:scripts/(?:experiments/)?|docker/)[\w.-]+\.sh\b|"
                            r"(?:\.venv/bin/)?python3? -m (?:lesson|harness|analysis|tools)\.)")
ENV_ASSIGNMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=")
# Tools whose commands are accepted as they are; their Ray names are checked.
OTHER_TOOLS = {"kubectl", "minikube", "helm", "ray", ".venv/bin/ray", "docker", "git", "cat", "ls",
               "rm", "cd", "export", "eval", "echo", "nproc", "top", "df", "du", "open", "curl",
               "python3", "grep", "jq", "head", "tail", "ps", "pgrep", "watch", "less", "bash",
               "source", "unset", "free", "taskset", "sed", "wc", "command", "which", "uname", "pip", "python",
               ".venv/bin/python", "python3.11"}
KUBERNETES_TOOLS = {"kubectl", "minikube", "helm"}
WRAPPERS = {"time", "env", "exec", "sudo", "nice"}
REQUIRED_RAY_LINKS = (
    "https://docs.ray.io/en/latest/train/train.html",
    "https://docs.ray.io/en/latest/train/distributed-tensorflow-keras.html",
    "https://docs.ray.io/en/latest/train/api/api.html",
    "https://docs.ray.io/en/latest/ray-core/key-concepts.html",
    "https://docs.ray.io/en/latest/cluster/kubernetes/index.html",
    "https://github.com/ray-project/kuberay",
    "https://github.com/ray-project/kuberay/tree/master/ray-operator/config/samples",
)
RAY_DOCS_LINK = re.compile(r"^https://docs\.ray\.io/en/latest/[\w./-]+\.html(?:#[\w.-]+)?$")
RAY_GITHUB_LINK = re.compile(r"^https://github\.com/ray-project/[\w.-]+(?:/[\w./-]*)?(?:#[\w.-]+)?$")


# ---------------------------------------------------------------- reading the docs


def read(relative):
    with open(os.path.join(REPO_ROOT, relative), encoding="utf-8") as source:
        return source.read()


def fenced_blocks(text):
    """(language, body) of every fenced code block."""
    return [(match.group(1).lower(), match.group(2))
            for match in re.finditer(r"^```([\w-]*)[^\n]*\n(.*?)^```", text, re.M | re.S)]


def prose(text):
    """The text without its fenced code blocks."""
    return re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.M | re.S)


def command_lines(language, body):
    """The command lines of a shell block, continuations joined; console output skipped."""
    lines, current, in_command = [], "", language != "console"
    for raw in body.splitlines():
        line = raw.rstrip()
        if language == "console" and not current:
            in_command = line.startswith("$ ")
            line = line[2:] if in_command else line
        if not in_command:
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        if current.strip() and not current.strip().startswith("#"):
            lines.append(current.strip())
        current = ""
    return lines


def split_commands(line):
    """The simple commands of a line, as token lists (&&, ||, ;, | separate them)."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    tokens = list(lexer)
    commands, current = [], []
    for token in tokens:
        if token and set(token) <= set(";&|"):
            if current:
                commands.append(current)
            current = []
        else:
            current.append(token)
    if current:
        commands.append(current)
    # Commands inside $( ... ) are commands too.
    for token in tokens:
        for inner in re.findall(r"\$\(([^()]*)\)", token):
            commands.extend(split_commands(inner))
    return commands


def all_commands():
    """(document, command tokens) for every fenced shell command and inline command."""
    found = []
    for doc in DOCS:
        text = read(doc)
        for language, body in fenced_blocks(text):
            if language in SHELL_LANGUAGES:
                for line in command_lines(language, body):
                    found += [(doc, line, tokens) for tokens in split_commands(line)]
        for span in re.findall(r"`([^`\n]+)`", prose(text)):
            if INLINE_COMMAND.match(span):
                found += [(doc, span, tokens) for tokens in split_commands(span)]
    return found


# ---------------------------------------------------------------- what the code offers


def _help_of(command):
    completed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
                               env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    return completed.returncode, completed.stdout + completed.stderr


def _help_command(name):
    if name.split(".")[0] in CODE_PACKAGES:
        return [sys.executable, "-m", name, "--help"]
    return [os.path.join(REPO_ROOT, name), "--help"]


@pytest.fixture(scope="module")
def helps():
    """`--help` of every script and training entry point, run in parallel (starts nothing)."""
    names = [os.path.relpath(path, REPO_ROOT) for path in shell_commands()]
    names += [os.path.relpath(path, REPO_ROOT)[:-3].replace(os.sep, ".") for path in python_modules()
              if "__main__" in read(os.path.relpath(path, REPO_ROOT))]
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        outputs = dict(zip(names, pool.map(lambda name: _help_of(_help_command(name)), names)))
    for name, (returncode, text) in outputs.items():
        assert returncode == 0, f"{name} --help failed:\n{text}"
    return {name: text for name, (_, text) in outputs.items()}


# The code's packages, by job: the lesson, the harness, the analysis and the tools.
CODE_PACKAGES = ("lesson", "harness", "analysis", "tools")
PYTHON_GLOBS = tuple(f"{package}/*.py" for package in CODE_PACKAGES)


def python_modules():
    """Every module of the code's packages, as absolute paths."""
    return sorted(path for pattern in PYTHON_GLOBS for path in glob.glob(os.path.join(REPO_ROOT, pattern)))


# The shell side, by job: the commands a newcomer runs (scripts/), the experiments
# (scripts/experiments/) and docker/'s; the libraries they source (scripts/lib/) and the
# targets (scripts/targets/), which have no --help of their own.
COMMAND_GLOBS = ("scripts/*.sh", "scripts/experiments/*.sh", "docker/*.sh")
LIBRARY_GLOBS = ("scripts/lib/*.sh", "scripts/targets/*.sh")


def shell_commands():
    """Every runnable script (each has a --help), as absolute paths."""
    return sorted(path for pattern in COMMAND_GLOBS for path in glob.glob(os.path.join(REPO_ROOT, pattern)))


def shell_scripts():
    """Every script and sourced library of the shell side, as absolute paths."""
    return sorted(shell_commands() + [path for pattern in LIBRARY_GLOBS
                                      for path in glob.glob(os.path.join(REPO_ROOT, pattern))])


def _word_in(word, text):
    return re.search(r"(?<![\w-])" + re.escape(word) + r"(?![\w-])", text) is not None


def _name_in(name, text):
    """`name` as a whole name: not part of a longer one (ray-cluster is not ray-cluster.yaml)."""
    return re.search(r"(?<![\w.-])" + re.escape(name) + r"(?![\w-]|\.\w)", text) is not None


def _names_corpus():
    """Everything the Kubernetes side defines: manifests, scripts and the image."""
    files = (glob.glob(os.path.join(REPO_ROOT, "k8s", "*.yaml")) + shell_scripts()
             + glob.glob(os.path.join(REPO_ROOT, "docker", "*")))
    return "\n".join(read(os.path.relpath(path, REPO_ROOT)) for path in files)


def _settings_corpus():
    files = []
    for pattern in ("docker/*", "k8s/*.yaml", ".ci/run"):
        files += glob.glob(os.path.join(REPO_ROOT, pattern))
    files += shell_scripts()
    files += python_modules()
    return "\n".join(read(os.path.relpath(path, REPO_ROOT)) for path in files)


def _path_exists(path):
    path = path[2:] if path.startswith("./") else path
    pattern = re.sub(r"<[^>]*>", "*", path).rstrip("/")
    return bool(glob.glob(os.path.join(REPO_ROOT, pattern)))


# ---------------------------------------------------------------- commands


def check_command(tokens, helps, names_corpus):
    """Problems with one simple command, as strings (empty when it is right)."""
    problems = []
    tokens = list(tokens)
    env_names = []
    while tokens and (ENV_ASSIGNMENT.match(tokens[0]) or tokens[0] in WRAPPERS):
        match = ENV_ASSIGNMENT.match(tokens[0])
        if match:
            env_names.append(match.group(1))
        tokens.pop(0)
    if not tokens:
        return problems
    command, arguments = tokens[0], tokens[1:]
    for token in tokens:
        for part in re.split(r"[=\s]", token):
            if PATH_PATTERN.match(part) and "*" not in part and not _path_exists(part):
                problems.append(f"path {part} does not exist")
    if SCRIPT_PATTERN.match(command):
        name = command[2:] if command.startswith("./") else command
        if not os.access(os.path.join(REPO_ROOT, name), os.X_OK):
            return problems + [f"{name} does not exist or is not executable"]
        text = helps.get(name, "")
        for env_name in env_names:
            if not _word_in(env_name, text):
                problems.append(f"{env_name} is not a setting of {name} (not in its --help)")
        if "pytest arguments" in text:
            return problems  # test.sh passes its arguments to pytest
        positionals = [argument for argument in arguments if not argument.startswith("-")]
        for argument in arguments:
            if argument.startswith("-") and not _word_in(argument.split("=")[0], text):
                problems.append(f"{name} has no flag {argument} (not in its --help)")
        if positionals and not _word_in(positionals[0], text):
            problems.append(f"{name} has no command '{positionals[0]}' (not in its --help)")
        return problems
    if command in ("python", "python3", ".venv/bin/python") and arguments[:1] == ["-m"]:
        module = arguments[1] if len(arguments) > 1 else ""
        if module.split(".")[0] not in CODE_PACKAGES:
            return problems
        if not os.path.exists(os.path.join(REPO_ROOT, *module.split(".")) + ".py"):
            return problems + [f"module {module} does not exist"]
        text = helps.get(module, "")
        for argument in arguments[2:]:
            if argument.startswith("-") and not _word_in(argument.split("=")[0], text):
                problems.append(f"{module} has no flag {argument} (not in its --help)")
        # Subcommands are listed under "positional arguments" (choices of a flag are not).
        choices = re.search(r"\{([\w,-]+)\}", text.split("positional arguments:", 1)[1]) \
            if "positional arguments:" in text else None
        positionals = [argument for argument in arguments[2:] if not argument.startswith("-")]
        if choices and positionals and positionals[0] not in choices.group(1).split(","):
            problems.append(f"{module} has no command '{positionals[0]}' ({choices.group(0)})")
        return problems
    if command in OTHER_TOOLS:
        if command not in KUBERNETES_TOOLS:
            return problems
        for token in arguments:
            if "<" in token:
                continue
            for part in re.split(r"[=/,:\s]+", token):
                if "ray" in part.lower() and not part.startswith("-") and not _name_in(part, names_corpus):
                    problems.append(f"'{part}' (in `{command} ...`) is named nowhere in k8s/ or scripts/")
        return problems
    return problems + [f"unknown command '{command}': add it to OTHER_TOOLS if it is meant"]


def test_the_documents_exist():
    for doc in DOCS:
        assert os.path.isfile(os.path.join(REPO_ROOT, doc)), f"{doc} is missing"


def test_every_documented_command_exists_with_its_flags_and_settings(helps):
    names_corpus = _names_corpus()
    problems = []
    for doc, line, tokens in all_commands():
        problems += [f"{doc}: `{line}`: {problem}" for problem in check_command(tokens, helps, names_corpus)]
    assert not problems, "\n".join(problems)


def test_the_commands_that_only_print_run_as_written():
    """`--help` and `--dry-run` start nothing, so the docs' uses of them are run."""
    seen = set()
    for doc, line, tokens in all_commands():
        words = [token for token in tokens if not ENV_ASSIGNMENT.match(token)]
        if not words or not SCRIPT_PATTERN.match(words[0]) or not {"--help", "--dry-run"} & set(words):
            continue
        key = tuple(tokens)
        if key in seen:
            continue
        seen.add(key)
        env = dict(os.environ)
        env.update(dict(token.split("=", 1) for token in tokens if ENV_ASSIGNMENT.match(token)))
        completed = subprocess.run(words, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)
        assert completed.returncode == 0, f"{doc}: `{line}` failed:\n{completed.stdout}{completed.stderr}"
    assert seen, "the docs should show at least one --help or --dry-run"


def test_the_checker_catches_wrong_flags_settings_and_names(helps):
    names_corpus = _names_corpus()
    assert check_command(["./scripts/run-benchmark.sh", "--smoke-test"], helps, names_corpus) == []
    assert check_command(["NUM_WORKERS=1", "./scripts/run-benchmark.sh"], helps, names_corpus) == []
    assert check_command(["./scripts/run-benchmark.sh", "--workers", "3"], helps, names_corpus)
    assert check_command(["WORKERS=3", "./scripts/run-benchmark.sh"], helps, names_corpus)
    assert check_command(["./scripts/no-such-script.sh"], helps, names_corpus)
    assert check_command([".venv/bin/python", "-m", "analysis.compare", "--num-worker", "2"], helps, names_corpus)
    assert check_command(["kubectl", "get", "raycluster", "ray-cluster"], helps, names_corpus)
    assert check_command(["kubectl", "-n", "ray-system", "get", "pods"], helps, names_corpus) == []
    assert check_command(["cat", "k8s/no-such.yaml"], helps, names_corpus)


# ---------------------------------------------------------------- paths, settings, links


def test_every_path_file_name_setting_and_flag_in_backticks_exists(helps):
    settings_corpus = _settings_corpus()
    all_help = "\n".join(helps.values())
    known_files = {os.path.basename(path) for pattern in ("scripts/*", "docker/*", *PYTHON_GLOBS, "tests/*.py",
                                                          "k8s/*", "*", ".ci/*", "docs/*")
                   for path in glob.glob(os.path.join(REPO_ROOT, pattern))} | {
        os.path.basename(path) for path in shell_scripts()}
    problems = []
    for doc in DOCS:
        for span in re.findall(r"`([^`\n]+)`", read(doc)):
            for word in span.split():
                word = word.strip(",;()")
                if PATH_PATTERN.match(word) and not _path_exists(word):
                    problems.append(f"{doc}: path `{word}` does not exist")
            if re.fullmatch(r"[\w-]+\.(?:sh|py|yaml)", span) and span not in known_files:
                problems.append(f"{doc}: file `{span}` exists nowhere in the repository")
            setting = re.fullmatch(r"([A-Z][A-Z0-9_]{2,})(?:=\S*)?", span)
            if setting and not _word_in(setting.group(1), settings_corpus):
                problems.append(f"{doc}: setting `{span}` is used nowhere in scripts/, the Python packages, docker/ or k8s/")
            if re.fullmatch(r"--[\w-]+", span) and not _word_in(span, all_help):
                problems.append(f"{doc}: flag `{span}` is in no script's or entry point's --help")
    assert not problems, "\n".join(problems)


def test_ray_links_are_well_formed_and_the_readme_has_the_essential_ones():
    problems = []
    for doc in DOCS:
        for url in re.findall(r"https?://[^\s)>\]`\"']+", read(doc)):
            url = url.rstrip(".,;")
            host = re.sub(r"^https?://", "", url).split("/")[0]
            is_ray = host.endswith("ray.io") or url.startswith(("https://github.com/ray-project", "http://github.com/ray-project"))
            if is_ray and not (RAY_DOCS_LINK.match(url) or RAY_GITHUB_LINK.match(url)):
                problems.append(f"{doc}: {url} is not a https://docs.ray.io/en/latest/...html or "
                                "https://github.com/ray-project/... link")
    readme = read("README.md")
    problems += [f"README.md does not link {url}" for url in REQUIRED_RAY_LINKS if f"({url})" not in readme]
    assert not problems, "\n".join(problems)


def test_the_project_structure_lists_every_file_users_touch_and_only_files_that_exist():
    readme = read("README.md")
    section = readme.split("## Project structure", 1)[1]
    block = fenced_blocks(section)[0][1]
    listed, directory = set(), ""
    for line in block.splitlines():
        head = re.match(r"^([\w./-]+/)\s", line)
        if head:
            directory = head.group(1)
        elif re.match(r"^[\w.-]+\.\w+\s", line):
            directory = ""
        # What is in parentheses describes a file (e.g. the REPORT.md it writes); it is not one.
        for name in re.findall(r"(?:\./)?[\w./-]*?[\w-]+\.(?:py|sh|yaml|txt|md)\b|Dockerfile",
                               re.sub(r"\([^)]*\)", "", line)):
            name = name[2:] if name.startswith("./") else name
            where = [name] if "/" in name else [os.path.join(directory, name), name, os.path.join("docs", name)]
            assert any(os.path.exists(os.path.join(REPO_ROOT, path)) for path in where), \
                f"the project structure lists {name}, which does not exist"
            listed.add(os.path.basename(name))
    expected = {os.path.basename(path) for pattern in (*PYTHON_GLOBS, "k8s/*.yaml", "docker/*")
                for path in glob.glob(os.path.join(REPO_ROOT, pattern))} - {"__init__.py"}
    expected |= {os.path.basename(path) for path in shell_scripts()}
    assert not expected - listed, f"the project structure misses {sorted(expected - listed)}"


# ---------------------------------------------------------------- numbers from a real run


def _load_json(path):
    with open(path, encoding="utf-8") as source:
        return json.load(source)


def _load(name):
    return _load_json(os.path.join(QUICKSTART_DIR, name))


def _duration(seconds):
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


def quickstart_values(folder):
    """The numbers of a quick-start run folder (the reference machine's, or the slower one's
    beside it): its runs, their seconds, the comparison's ratios and the timings' durations."""
    def load(name):
        path = os.path.join(folder, name)
        if not os.path.exists(path):
            return None
        with open(path, encoding="utf-8") as source:
            return json.load(source)

    baseline, ray_run, alone = load("baseline_results.json"), load("ray_results_2workers.json"), \
        load("tensorflow_alone_results_2workers.json")
    comparison, timings = load("comparison.json"), load("timings.json") or {}
    runs = [run for run in (baseline, ray_run, alone) if run]
    seconds = []
    for run in runs:
        seconds += [run["train_time_seconds"], run["startup_seconds"], run["total_time_seconds"],
                    run["total_time_seconds"] - run["startup_seconds"] - run["train_time_seconds"]]
        seconds += run["epoch_times_seconds"]
        seconds += [worker["fit_seconds"] for worker in run.get("workers", [])]
    seconds.append(ray_run["trainer_start_to_first_batch_seconds"])
    if alone:
        seconds.append(alone["launch_to_first_batch_seconds"])
    if timings.get("run_benchmark_wall_seconds"):
        seconds.append(timings["run_benchmark_wall_seconds"] - sum(run["total_time_seconds"] for run in runs))
    ratios = [comparison["speedup"], comparison["speedup_end_to_end"], comparison["throughput_ratio"],
              (comparison["scaling_efficiency"] or 0) * comparison["num_workers"]]
    if alone:
        ratios += [comparison["tensorflow_alone_throughput_ratio"], comparison["tensorflow_alone_speedup_end_to_end"]]
    calibration = load("calibration.json")
    if calibration:
        runs.append({"images_per_second": calibration["images_per_second"]})
        seconds.append(calibration["expected_baseline_training_seconds"])
    durations = [timings[key] for key in ("run_benchmark_wall_seconds", "venv_install_seconds", "test_suite_wall_seconds")
                 if timings.get(key) is not None]
    return runs, seconds, ratios, durations


def quoted_values():
    """Every number the docs may quote, formatted as they print it: {kind: set of strings}."""
    # The reference machine's quick start, the slower machine's, which the docs quote beside it,
    # and the earlier default run of the same code on the reference machine (tensorflow_alone/run-1/).
    runs, seconds, ratios, durations = (sum(values, []) for values in zip(
        *(quickstart_values(os.path.join(REPO_ROOT, "docs", "results", folder))
          for folder in ("quickstart", "quickstart-zen3", os.path.join("tensorflow_alone", "run-1"),
                         os.path.join("rehearsal", "pods-1"), os.path.join("rehearsal", "local-1")))))
    ratios = [ratio for ratio in ratios if ratio is not None]  # a run that did not settle has none
    baseline, ray_run = _load("baseline_results.json"), _load("ray_results_2workers.json")
    # Runs measured side by side for one change (docs/results/startup/, niceness/), quoted in PERFORMANCE.md.
    for path in sorted(glob.glob(os.path.join(REPO_ROOT, "docs", "results", "*", "*-[0-9]", "ray_results_2workers.json"))):
        with open(path, encoding="utf-8") as source:
            measured = json.load(source)
        seconds += [measured["trainer_start_to_first_batch_seconds"], measured["startup_seconds"]]
        runs = runs + [{"images_per_second": measured["images_per_second"]}]
        if measured.get("injected_failure"):  # a chaos run (docs/results/rehearsal/chaos-1/)
            seconds += [measured["injected_failure"][key] for key in ("detect_and_restart_seconds", "time_lost_seconds")]
    # The rehearsed pods' cgroups (docs/results/rehearsal/*/rehearsal.json), quoted in KUBERNETES.md.
    for path in sorted(glob.glob(os.path.join(REPO_ROOT, "docs", "results", "rehearsal", "*", "rehearsal.json"))):
        with open(path, encoding="utf-8") as source:
            seconds = seconds + [row["cpu_throttled_seconds"] for row in json.load(source)["rows"]]
    # The batch curve (docs/results/batch_curve/, tools/batch_curve.py), quoted in PERFORMANCE.md.
    with open(os.path.join(REPO_ROOT, "docs", "results", "batch_curve", "batch_curve.json"), encoding="utf-8") as source:
        runs = runs + json.load(source)["points"]
    # The chaos demo's run (docs/results/chaos/), quoted in the README's fault-tolerance section.
    with open(os.path.join(REPO_ROOT, "docs", "results", "chaos", "ray_results_2workers.json"),
              encoding="utf-8") as source:
        chaos = json.load(source)
    failure = chaos["injected_failure"]
    seconds += [failure["time_lost_seconds"], failure["detect_and_restart_seconds"], failure["redone_seconds"]]
    seconds += chaos["epoch_times_seconds"]
    # The start-up profile's pairs (docs/results/startup_profile/), quoted in PERFORMANCE.md: each
    # side's mean first batch and the median of the pairs' differences.
    profile_dir = os.path.join(REPO_ROOT, "docs", "results", "startup_profile")
    firsts = {side: [_load_json(path)["trainer_start_to_first_batch_seconds"] for path in
                     sorted(glob.glob(os.path.join(profile_dir, f"*-{side}-[0-9]", "ray_results_2workers.json")))]
              for side in ("before", "after")}
    seconds += [sum(values) / len(values) for values in firsts.values()]
    seconds.append(statistics.median(before - after for before, after in zip(*firsts.values())))
    # Its fresh-cluster rounds: each side's mean first batch, and the median of the rounds' differences.
    fresh = {side: [_load_json(path)["trainer_start_to_first_batch_seconds"] for path in sorted(glob.glob(
        os.path.join(profile_dir, "fresh-cluster", f"{side}-[0-9]", "ray_results_2workers.json")))]
        for side in ("before", "cleaner", "both")}
    seconds += [sum(values) / len(values) for values in fresh.values()]
    seconds += [statistics.median(a - b for a, b in zip(fresh[first], fresh[then]))
                for first, then in (("before", "cleaner"), ("cleaner", "both"), ("before", "both"))]
    # Its training windows (--window training), quoted in PERFORMANCE.md: each window's length.
    seconds += [_load_json(path)["seconds"] for path in sorted(glob.glob(os.path.join(profile_dir, "training-*",
                                                                                       "profile.json")))]
    # The scaling sweep's run (docs/results/scaling/workers-<N>/), quoted for its targets.
    runs = runs + [baseline, ray_run]  # the chaos run is quoted for its accuracy, not its speed
    for folder in sorted(glob.glob(os.path.join(SCALING_DIR, "workers-*"))):
        with open(os.path.join(folder, "comparison.json"), encoding="utf-8") as source:
            sweep = json.load(source)
        ratios += [sweep["speedup"], sweep["speedup_end_to_end"], sweep["throughput_ratio"]]
        for kind in ("baseline", "ray"):
            runs.append(sweep[kind])
            seconds += [sweep[kind]["train_time_seconds"], sweep[kind]["total_time_seconds"]]
        with open(os.path.join(folder, results.ray_file(sweep["num_workers"])), encoding="utf-8") as source:
            seconds.append(json.load(source)["trainer_start_to_first_batch_seconds"])
    # The levers run (docs/results/levers/<row>/), quoted in docs/PERFORMANCE.md: each row's
    # throughput, its ratio to the baseline row, the ceiling's, first batch, accuracy.
    accuracies = []
    from analysis import levers as levers_table

    # The Zen 3 levers run, and the Ice Lake one with the ceiling and TensorFlow alone.
    for levers in (os.path.join(REPO_ROOT, "docs", "results", name) for name in ("levers", "levers-icelake")):
        for row in levers_table.table_rows(levers_table.load_rows(levers)):
            ratios.append(row["ratio"])
            runs.append({"images_per_second": row["images_per_second"]})
            # A batch row's validation accuracy, and the default row's at the same training time.
            accuracies += [row[key] for key in ("val_accuracy", "reference_accuracy_same_time") if row.get(key)]
            if row["first_batch"] is not None:
                seconds.append(row["first_batch"])
        for record in levers_table.load_rows(levers).values():
            for run in (record if isinstance(record, list) else [record]):
                runs.append(run)
                seconds += [run["train_time_seconds"], run["total_time_seconds"]]
    # The Tune search's reference run (docs/results/tune/, TUNE.md), quoted in EXERCISE Part 9:
    # each way's wall time, best accuracy and time to within 1 point of the best, and the trials'.
    from analysis import tune_report

    with open(os.path.join(REPO_ROOT, "docs", "results", "tune", "tune_results.json"), encoding="utf-8") as source:
        search = json.load(source)
    rows, best = tune_report.summarise(search)
    timed = sorted(row["seconds_to_within_1_point"] for row in rows if row["seconds_to_within_1_point"])
    seconds += [row[key] for row in rows for key in ("wall_seconds", "seconds_to_within_1_point") if row[key]]
    seconds += [later - timed[0] for later in timed[1:]]
    ratios += [later / timed[0] for later in timed[1:]]
    ratios += [row["wall_seconds"] / other["wall_seconds"] for row in rows for other in rows]
    accuracies += [best] + [row["best_accuracy"] for row in rows if row["best_accuracy"] is not None]
    for way in search["ways"]:
        for trial in way["trials"].values():
            accuracies += [epoch["val_accuracy"] for epoch in trial["epochs"]]
            seconds += [trial["ended_seconds"]]
    return {
        # The targets (analysis/targets.py) are quoted too: 1.80x for 2 workers, 1.70x on 2 cores, ...
        "ratio": {f"{value:.2f}x" for value in ratios}
        | {f"{workers * efficiency:.2f}x" for workers, efficiency in targets.TARGET_EFFICIENCY_BY_WORKERS.items()}
        | {f"{2 * targets.TARGET_EFFICIENCY:.1f}x", f"{2 * targets.TARGET_EFFICIENCY_ALL_CORES_BUSY:.2f}x",
           f"{targets.TARGET_OVERHEAD_RATIO:.2f}x"},
        "throughput": {f"{run['images_per_second']:.1f} img/s" for run in runs if run['images_per_second'] is not None},
        "accuracy": {f"{run[key]:.4f}" for run in (*runs, chaos) for key in ("test_accuracy", "test_loss")
                     if run.get(key) is not None} | {f"{value:.4f}" for value in accuracies},
        "seconds": {f"{value:.1f} s" for value in seconds},
        "duration": {_duration(value) for value in durations},
    }


NUMBER_PATTERNS = {
    "ratio": r"(?<![\w.])\d+\.\d+x\b",
    "throughput": r"(?<![\w.])\d+(?:\.\d+)? img/s",
    "accuracy": r"(?<![\w.])0\.\d{4}\b",
    "seconds": r"(?<![\w.])\d+\.\d s\b",
    "duration": r"(?<![\w.])\d+ min \d+ s\b",
}


def test_the_readme_shows_the_comparison_table_of_the_committed_run():
    comparison = _load("comparison.json")
    table = compare.format_table(comparison)
    blocks = [body.rstrip("\n") for language, body in fenced_blocks(read("README.md")) if language == ""]
    assert table in blocks, ("The README's comparison table must be what analysis/compare.py prints for "
                             "docs/results/quickstart/comparison.json. Paste this:\n" + table)


def test_the_committed_comparison_follows_from_the_committed_runs():
    comparison = compare.compare(_load("baseline_results.json"), _load("ray_results_2workers.json"),
                                 compare.load_tensorflow_alone(QUICKSTART_DIR, 2))
    assert comparison == _load("comparison.json")


def test_the_committed_sweep_has_both_worker_counts_and_its_comparisons_follow_from_its_runs():
    folders = sorted(glob.glob(os.path.join(SCALING_DIR, "workers-*")))
    assert [os.path.basename(folder) for folder in folders] == ["workers-1", "workers-2"]
    for folder in folders:
        def load(name):
            with open(os.path.join(folder, name), encoding="utf-8") as source:
                return json.load(source)
        workers = int(folder.rsplit("-", 1)[1])
        assert compare.compare(load("baseline_results.json"), load(results.ray_file(workers))) == load("comparison.json")
    assert os.path.exists(os.path.join(SCALING_DIR, "REPORT.md"))


def test_every_number_quoted_in_the_docs_is_a_value_of_the_committed_run():
    allowed = quoted_values()
    problems = []
    for doc in DOCS:
        text = prose(read(doc))
        for kind, pattern in NUMBER_PATTERNS.items():
            for found in re.findall(pattern, text):
                if found not in allowed[kind]:
                    problems.append(f"{doc}: '{found}' is not a {kind} of docs/results/quickstart "
                                    f"(its values: {sorted(allowed[kind])})")
    assert not problems, "\n".join(problems)


def code_texts():
    """What users read as docs inside the code: the docstrings of each module of the code's
    packages (the module's, its classes' and functions') and each script's header comment (its --help)."""
    texts = {}
    for path in python_modules():
        tree = ast.parse(read(os.path.relpath(path, REPO_ROOT)))
        # The module's docstring, then its classes' and functions'.
        docstrings = [ast.get_docstring(node) for node in [tree] + [
            node for node in ast.walk(tree) if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))]]
        if any(docstrings):
            texts[os.path.relpath(path, REPO_ROOT)] = "\n\n".join(docstring for docstring in docstrings if docstring)
    for path in shell_scripts():
        header = []
        for line in read(os.path.relpath(path, REPO_ROOT)).splitlines()[1:]:
            if not line.startswith("#"):
                break
            header.append(line.lstrip("# "))
        texts[os.path.relpath(path, REPO_ROOT)] = "\n".join(header)
    return texts


def test_docstrings_and_script_headers_quote_only_numbers_of_the_committed_runs():
    allowed = quoted_values()
    problems = []
    for name, text in code_texts().items():
        for kind, pattern in NUMBER_PATTERNS.items():
            for found in re.findall(pattern, text):
                if found not in allowed[kind]:
                    problems.append(f"{name}: '{found}' is not a {kind} of the committed runs")
    assert not problems, "\n".join(problems)


def test_paths_named_in_docstrings_and_script_headers_exist():
    problems = []
    for name, text in code_texts().items():
        for word in re.findall(r"(?:\./)?(?:%s)/[\w./<>*-]*\w" % "|".join(PATH_PREFIXES), text):
            if "<" not in word and "*" not in word and not _path_exists(word):
                problems.append(f"{name}: {word} does not exist")
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------- one set of times

# A time as the docs write it: "8 min 5 s", or in words ("about 7 minutes", "3-4 min", "two
# minutes", "a few seconds", "half a minute"). Seconds written as digits ("17.7 s", "900
# seconds") are measurements of a run or settings, which the checks above cover.
_AMOUNT = r"(?:\d+(?:\.\d+)?|an?|one|two|three|four|five|six|seven|eight|nine|ten|twenty|thirty|half an?|a few|several|tens of)"
TIME_PHRASE = re.compile(
    r"(?<![\w.-])(?:\d+ min \d+ s\b|(?:(?:about|under|over|nearly|roughly|around|some|up to|within|less than|"
    r"more than)\s+)?(?:" + _AMOUNT + r"(?:\s*(?:-|to|or)\s*" + _AMOUNT + r")?\s+(?:minutes?|min|hours?)\b"
    r"(?: and a half)?|(?:a few|several|tens of)\s+seconds\b))")
VENV_SIZE = re.compile(r"(?<![\w.])\d+(?:\.\d+)? GB\b")
# How close after a time the step it belongs to may be named, when none is named before it.
FOLLOWING_STEP_CHARACTERS = 25
# The slower reference machine: its values may be quoted only where it is named.
SLOWER_MACHINE = re.compile(r"Zen 3|slower")
# The Minikube path has never run on a real cluster (docs/KUBERNETES.md): its times are
# estimates of steps of their own, which no committed run measures.
MINIKUBE_STEP = re.compile(r"TARGET=minikube|run-rayjob\.sh|kubectl|[Mm]inikube")


def _load_timings(folder):
    with open(os.path.join(REPO_ROOT, "docs", "results", folder, "timings.json"), encoding="utf-8") as source:
        return json.load(source)


def measured_steps():
    """The steps whose time the docs quote, each with the words that name it and the times it
    may be quoted with: the committed runs' (the reference machine's, and the slower one's
    where it is named), or none where no run of it is committed."""
    from harness import calibrate

    reference, slower = _load_timings("quickstart"), _load_timings("quickstart-zen3")

    def measured(key):
        return {_duration(reference[key])}, {_duration(slower[key])}

    return {
        "installing .venv": (r"\.venv\b(?!/bin)|\bpip\b|requirements-dev", *measured("venv_install_seconds")),
        "the default benchmark": (r"run-benchmark\.sh(?![ \w]*--)|\b[Rr]un(?:ning)? the benchmark\b|first command|"
                                  r"run with the defaults|default (?:recipe|run)\b|quick-start run",
                                  *measured("run_benchmark_wall_seconds")),
        "the test suite": (r"test\.sh|test suite|whole suite", *measured("test_suite_wall_seconds")),
        # No run of these is committed: they may be quoted with no time at all.
        "the smoke test": (r"--smoke-test|smoke test|smoke run", set(), set()),
        "the exercise's short recipe": (r"short recipe", set(), set()),
        "Ray's start-up": (r"start-up|first batch", set(), set()),
        # Not measured but chosen: the calibration's own timed steps, and its target.
        "the calibration": (r"[Cc]alibrat|[Ss]izes? the (?:training set|default run)|sized to",
                            {f"about {calibrate.TARGET_SECONDS / 60:g} minutes", "a few seconds"}, set()),
    }


def text_units(text, markdown=True):
    """The pieces a time is read in: sentences of prose, table rows, code lines with their comments."""
    units = []
    if markdown:
        units += [line for _, body in fenced_blocks(text) for line in body.splitlines() if line.strip()]
        text = prose(text)
    for paragraph in re.split(r"\n\s*\n", text):
        rows = paragraph.splitlines() if paragraph.lstrip().startswith("|") else [paragraph]
        for row in rows:
            units += re.split(r"(?<=[.;!?])\s+(?=[A-Z`(*])", " ".join(row.split()))
    return units


def step_time_problems(name, text, steps, markdown=True):
    """Times quoted for a measured step that are not its committed value, as strings. A time
    belongs to the nearest step named before it in the same piece, else to one named right
    after it ("7 min 13 s in the quick-start run"), else to none."""
    problems = []
    for unit in text_units(text, markdown):
        named = [(match.start(), match.end(), step) for step, (pattern, _, _) in steps.items()
                 for match in re.finditer(pattern, unit)]
        if not named or MINIKUBE_STEP.search(unit):
            continue
        slower_named = bool(SLOWER_MACHINE.search(unit))
        for phrase in TIME_PHRASE.finditer(unit):
            before = [entry for entry in named if entry[1] <= phrase.start()]
            after = [entry for entry in named if phrase.end() <= entry[0] <= phrase.end() + FOLLOWING_STEP_CHARACTERS]
            if not before and not after:
                continue
            # The nearest before; of names ending there, the longest ("size the default run").
            step = (max(before, key=lambda entry: (entry[1], -entry[0])) if before else min(after))[2]
            _, reference, slower = steps[step]
            allowed = reference | (slower if slower_named else set())
            if phrase.group(0) not in allowed:
                problems.append(f"{name}: '{phrase.group(0)}' for {step}, where the committed runs give "
                                f"{sorted(allowed) or 'no time'}: \"{unit[:140]}\"")
    return problems


def venv_size_problems(name, text, markdown=True):
    """Sizes of .venv other than the committed one (the slower machine's where it is named)."""
    reference, slower = (f"{_load_timings(folder)['venv_size_gb']} GB" for folder in ("quickstart", "quickstart-zen3"))
    problems = []
    for unit in text_units(text, markdown):
        if ".venv" not in unit:
            continue
        allowed = {reference} | ({slower} if SLOWER_MACHINE.search(unit) else set())
        for size in VENV_SIZE.finditer(unit):
            # Only a size written next to .venv is its size (not the machine's memory in the same sentence).
            if ".venv" in unit[max(0, size.start() - 40):size.end() + 40] and size.group(0) not in allowed:
                problems.append(f"{name}: .venv of {size.group(0)}, where the committed runs give {sorted(allowed)}: "
                                f"\"{unit[:140]}\"")
    return problems


def test_every_time_quoted_for_a_measured_step_is_its_committed_time_in_docs_docstrings_and_script_headers():
    """One set of times: the install, the default benchmark and the test suite are quoted with
    the times of docs/results/quickstart/timings.json (the slower machine's only where it is
    named), the smoke test and the exercise's short recipe with none (no run of them is
    committed), and .venv's size is the committed one. Two places cannot then disagree."""
    steps = measured_steps()
    problems = []
    for doc in DOCS:
        problems += step_time_problems(doc, read(doc), steps) + venv_size_problems(doc, read(doc))
    for name, text in code_texts().items():
        problems += step_time_problems(name, text, steps, markdown=False) + venv_size_problems(name, text, markdown=False)
    assert not problems, "\n".join(problems)


def test_getting_started_is_the_one_place_with_every_measured_step_time():
    getting_started = " ".join(read("GETTING_STARTED.md").split())
    timings = _load_timings("quickstart")
    for key in ("venv_install_seconds", "run_benchmark_wall_seconds", "test_suite_wall_seconds"):
        assert _duration(timings[key]) in getting_started, key
    assert f"{timings['venv_size_gb']} GB" in getting_started


def test_the_time_checker_catches_vague_conflicting_and_unmeasured_times():
    steps = measured_steps()

    def found(text):
        return step_time_problems("doc", text, steps) + venv_size_problems("doc", text)
    assert found("`./scripts/test.sh` took 10 min 42 s.") == []
    assert found("The whole suite took 10 min 17 s on the slower Zen 3 VM.") == []
    assert found("The whole suite took 10 min 17 s.")  # the slower machine's, unnamed
    assert found("A run with the defaults takes about 7 minutes on 2 cores.")
    assert found("It took 7 min 13 s in the quick-start run.")
    assert found("Check it with `--smoke-test` (tiny data, one epoch, two minutes).")
    assert found("```bash\n./scripts/run-benchmark.sh --smoke-test   # about a minute\n```\n")
    assert found("| 3. Run the benchmark | 10 min |")
    assert found("Expect a start-up of about half a minute before the first batch.")
    assert found("The default recipe trains for about ten minutes.")
    assert found("Installing requirements.txt into .venv (first time: 2-5 minutes, about 3 GB).")
    assert found("`.venv` takes 3.1 GB.") and not found("`.venv` takes 3.4 GB.")
    assert found("Sizes the training set for about 2.5 minutes of baseline training.") == []
    assert found("Ray retries to place the group, each try waiting up to a minute.") == []


def _recipe_output(*flags):
    return subprocess.run([sys.executable, "-m", "lesson.recipe", *flags], cwd=REPO_ROOT, capture_output=True,
                          text=True, check=True).stdout


def test_script_headers_leave_the_recipe_defaults_to_lesson_recipe():
    """No header restates a default of the recipe (EPOCHS=3): --help prints them from
    lesson/recipe.py, where they are written once."""
    names = {line.split("=", 1)[0] for line in _recipe_output().split()}
    problems = []
    for name, text in code_texts().items():
        if not name.endswith(".sh"):
            continue
        for setting, value in re.findall(r"^\s*([A-Z_]+)=(\S+)\s", text + "\n", re.M):
            if setting in names:
                problems.append(f"{name}: {setting}={value} restates the recipe; a '#   RECIPE: ...' line prints it")
    assert not problems, "\n".join(problems)


def test_the_help_of_every_script_with_the_recipe_marker_shows_the_recipe_with_its_defaults(helps):
    described = [line.strip() for line in _recipe_output("--describe").splitlines() if line.strip()]
    assert described and all("=" in line for line in described)
    marked = [os.path.relpath(path, REPO_ROOT) for path in shell_commands()
              if re.search(r"^#   RECIPE: ", read(os.path.relpath(path, REPO_ROOT)), re.M)]
    assert {"scripts/run-benchmark.sh", "scripts/run-rayjob.sh", "scripts/experiments/chaos.sh"} <= set(marked)
    for name in marked:
        shown = [line.strip() for line in helps[name].splitlines()]
        missing = [line for line in described if line not in shown]
        assert not missing, f"{name} --help lacks the recipe's lines {missing}"
        assert "RECIPE:" not in helps[name], f"{name} --help shows the marker instead of the recipe"


def test_the_readme_states_the_machine_versions_and_time_of_that_run():
    ray_run, timings = _load("ray_results_2workers.json"), _load("timings.json")
    host, versions = ray_run["host"], ray_run["versions"]
    readme = read("README.md")
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    expected = [f"{host['logical_cores']}-core {host['cpu_model']}", f"{round(host['memory_gib'])} GB",
                f"Python {versions['python']}", f"Ray {versions['ray']}", f"TensorFlow {versions['tensorflow']}",
                f"tf-keras {versions['keras']}", _duration(timings["run_benchmark_wall_seconds"])]
    missing = [fact for fact in expected if fact not in " ".join(quick_start.split())]
    assert not missing, f"the quick start should state {missing} (from docs/results/quickstart)"


def test_the_quick_start_is_exactly_the_two_commands():
    quick_start = read("README.md").split("## Quick start", 1)[1]
    language, body = fenced_blocks(quick_start)[0]
    commands = [" ".join(tokens) for line in command_lines(language, body) for tokens in split_commands(line)]
    assert commands == ["./scripts/run-benchmark.sh", "./scripts/test.sh"]
    assert "exec ./scripts/test.sh" in read(".ci/run")


# ---------------------------------------------------------------- shape of the teaching material


def test_the_exercise_has_nine_parts_and_an_answer_for_every_checkpoint_question():
    exercise = read("docs/EXERCISE.md")
    parts = re.findall(r"^## Part (\d+)", exercise, re.M)
    assert parts == [str(number) for number in range(1, 10)]
    body, _, key = exercise.partition("## Answer key")
    questions = re.findall(r"\*\*Q(\d+)\.", body)
    answers = re.findall(r"\*\*A(\d+)\.", key)
    assert questions and questions == answers, (questions, answers)


def test_the_getting_started_checklist_covers_every_step():
    headings = " ".join(re.findall(r"^## (.+)$", read("GETTING_STARTED.md"), re.M)).lower()
    for step in ("pre-flight", "setup", "run", "verify", "troubleshoot", "clean up"):
        assert step in headings, f"GETTING_STARTED.md has no '{step}' section"
