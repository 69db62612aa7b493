"""The targets of the scripts (scripts/targets/, chosen by scripts/lib/targets.sh): every command
that differs by target calls the same functions of one target file and never branches on the
target's name, so that a new target is one new file. The stub target of the tests
(tests/fakes/targets/stub.sh) records its calls; nothing here starts Ray or touches a cluster."""

import os
import re

import pytest

from conftest import REPO_ROOT, run

STUB_DIR = REPO_ROOT / "tests" / "fakes" / "targets"
TARGETS = sorted((REPO_ROOT / "scripts" / "targets").glob("*.sh"))
# The commands that take a target, with the calls each must make of it, in order.
COMMANDS = {
    "scripts/run-benchmark.sh": (["--smoke-test"], [
        "target_settings", "target_benchmark_check", "target_benchmark", "target_stop"]),
    "scripts/run-tune.sh": ([], ["target_settings", "target_tune_check", "target_tune NUM_WORKERS=2 TRAIN_SIZE=2048 WAYS=", "target_stop"]),
    "scripts/open-dashboard.sh": ([], ["target_open_dashboard", "target_stop"]),
    "scripts/run-rayjob.sh": (["--dry-run"], ["target_run_rayjob DRY_RUN=1", "target_stop"]),
    "scripts/experiments/chaos.sh": ([], [
        "target_chaos_check", "target_settings", "target_chaos_start", "target_chaos_train", "target_python",
        "target_chaos_victim", "target_python", "target_chaos_kill", "target_chaos_finish", "target_stop"]),
}


def interface():
    """The functions a target defines, as scripts/lib/targets.sh lists them."""
    header = (REPO_ROOT / "scripts" / "lib" / "targets.sh").read_text()
    return sorted(set(re.findall(r"^#   (target_\w+)", header, re.M)))


def defined_functions(path):
    return sorted(set(re.findall(r"^(target_\w+)\(\) \{", path.read_text(), re.M)))


def stub_env(tmp_path, **settings):
    return {"TARGET": "stub", "TARGETS_DIR": str(STUB_DIR), "STUB_LOG": str(tmp_path / "stub.log"),
            "RESULTS_DIR": str(tmp_path / "results"), **settings}


def stub_calls(tmp_path):
    log = tmp_path / "stub.log"
    return log.read_text().splitlines() if log.exists() else []


def test_every_target_and_the_stub_implement_exactly_the_listed_functions():
    names = interface()
    assert "target_available" in names and "target_stop" in names and len(names) >= 10
    for path in TARGETS + [STUB_DIR / "stub.sh"]:
        assert defined_functions(path) == names, path


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_each_command_that_takes_a_target_calls_the_stub_targets_functions(command, tmp_path):
    arguments, expected = COMMANDS[command]
    finished = run([str(REPO_ROOT / command), *arguments], env=stub_env(tmp_path), timeout=60)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    calls = stub_calls(tmp_path)
    assert [call.split(" ")[0] if " " not in expected_call else call
            for call, expected_call in zip(calls, expected)] == expected, calls
    assert len(calls) == len(expected), calls


def test_the_benchmark_gives_the_target_the_resolved_recipe_and_a_run_folder(tmp_path):
    finished = run([str(REPO_ROOT / "scripts" / "run-benchmark.sh"), "--smoke-test"],
                   env=stub_env(tmp_path, NUM_WORKERS="3"), timeout=60)
    assert finished.returncode == 0, finished.stderr
    benchmark = next(call for call in stub_calls(tmp_path) if call.startswith("target_benchmark "))
    assert benchmark.startswith("target_benchmark NUM_WORKERS=3 EPOCHS=1 --dataset synthetic --train-size 256")
    assert "--num-workers 3 --cpus-per-worker 1" in benchmark
    latest = tmp_path / "results" / "latest"
    assert latest.is_symlink() and latest.resolve().name.endswith("-stub-smoke")
    assert (latest / "stub.txt").read_text() == "stub\n"


def test_chaos_notes_the_failure_through_the_target_with_how_it_killed(tmp_path):
    finished = run([str(REPO_ROOT / "scripts" / "experiments" / "chaos.sh")], env=stub_env(tmp_path), timeout=60)
    assert finished.returncode == 0, finished.stderr
    calls = stub_calls(tmp_path)
    train = next(call for call in calls if call.startswith("target_chaos_train "))
    assert re.fullmatch(r"target_chaos_train --checkpoint --run-name chaos-\d{8}-\d{6}-\d+", train)
    assert re.fullmatch(r"target_python -m tools\.chaos mark-failure stub://chaos-\S+ 0123456789abcdef 1 1 "
                        r"the stub kills nothing", next(call for call in calls if "mark-failure" in call))
    assert "target_chaos_kill 0123456789abcdef" in calls


def test_auto_picks_the_first_available_target_and_says_why(tmp_path):
    finished = run([str(REPO_ROOT / "scripts" / "open-dashboard.sh")], env=stub_env(tmp_path, TARGET="auto"))
    assert finished.returncode == 0, finished.stderr
    assert "Target: stub, because TARGET=auto: the stub target always answers." in finished.stdout
    assert stub_calls(tmp_path)[0] == "target_available"


def test_auto_without_an_available_target_fails_naming_the_targets(tmp_path):
    finished = run([str(REPO_ROOT / "scripts" / "open-dashboard.sh")],
                   env=stub_env(tmp_path, TARGET="auto", STUB_AVAILABLE="1"))
    assert finished.returncode == 1
    assert "TARGET=auto: no target is available (stub is not available" in finished.stderr
    assert stub_calls(tmp_path) == ["target_available"]


def test_an_unknown_target_is_refused_with_the_targets_there_are(tmp_path):
    finished = run([str(REPO_ROOT / "scripts" / "run-benchmark.sh")], env=stub_env(tmp_path, TARGET="cloud"))
    assert finished.returncode == 1
    assert "TARGET must be one of: auto stub; got 'cloud'" in finished.stderr
    assert stub_calls(tmp_path) == []


def test_the_local_target_says_in_words_that_it_has_no_rayjob(tmp_path):
    finished = run([str(REPO_ROOT / "scripts" / "run-rayjob.sh")], env={"TARGET": "local",
                                                                         "RESULTS_DIR": str(tmp_path)})
    assert finished.returncode == 1
    assert "The local target cannot run a RayJob: a RayJob is a KubeRay resource" in finished.stderr
    assert "TARGET=minikube" in finished.stderr
    assert list(tmp_path.iterdir()) == []


def test_the_commands_never_branch_on_the_name_of_a_target():
    names = [path.stem for path in TARGETS]
    for command in COMMANDS:
        text = (REPO_ROOT / command).read_text()
        code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
        for name in names:
            assert not re.search(rf'(==|!=) *"?{name}\b|^\s*{name}\)|\b{name}_\w+\(', code, re.M), (command, name)
        assert "source_target" not in code and "targets/" not in code, command


def test_ls_scripts_shows_the_commands_and_the_rooms_by_job():
    entries = sorted(os.listdir(REPO_ROOT / "scripts"))
    assert [entry for entry in entries if not entry.endswith(".sh")] == ["experiments", "lib", "targets"]
    assert sorted(os.listdir(REPO_ROOT / "scripts" / "experiments")) == [
        "chaos.sh", "levers-benchmark.sh", "measure-pod-memory.sh", "rehearse-pods.sh", "scaling-benchmark.sh"]


@pytest.mark.parametrize("path", sorted((REPO_ROOT / "scripts").rglob("*.sh")), ids=lambda path: str(path))
def test_no_script_or_library_is_longer_than_250_lines(path):
    assert len(path.read_text().splitlines()) <= 250, path


def test_one_flag_parser_serves_every_script():
    copies = [path for path in (REPO_ROOT / "scripts").rglob("*.sh") if "while (($# > 0))" in path.read_text()]
    assert copies == [], copies
