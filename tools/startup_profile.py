"""Where the CPU goes while a Ray run starts: which processes used the machine's cores from the
trainer's start to the first training batch (issue 17, docs/PERFORMANCE.md "Start-up"); with
`--window training`, while it trains: which of Ray's processes share the workers' cores then.

    .venv/bin/python -m tools.startup_profile --results-dir /tmp/run --out profile.json -- \\
        .venv/bin/python -m lesson.ray_training --address 127.0.0.1:6380 --results-dir /tmp/run

It runs the command and samples /proc every 0.2 s: the machine's busy share (/proc/stat) and
each process's CPU time (user + system, /proc/PID/stat), named by its command line (Ray names
an actor's process ray::ClassName). Then it reads the Ray results JSON the command wrote in
--results-dir for the window: the first batch (`attempts[0].first_batch`) less
`trainer_start_to_first_batch_seconds`. The training window runs from the first batch for the
sum of `epoch_times_seconds` (the epochs' training steps, without validation), so it ends inside
the run's last epoch. A process counts the CPU it used between its first and
its last sample in the window (one that starts inside it, from zero). Linux only.
"""

import argparse
import glob
import json
import os
import subprocess
import sys
import time

TICKS = os.sysconf("SC_CLK_TCK")
INTERVAL_SECONDS = 0.2


def machine_ticks():
    """(all ticks, idle ticks) of the machine so far."""
    with open("/proc/stat", encoding="ascii") as stat:
        values = [int(value) for value in stat.readline().split()[1:]]
    return sum(values), values[3] + values[4]  # idle and iowait


def process_name(cmdline):
    """ray::TrainController.run -> ray::TrainController; a Python process by its module or script."""
    words = cmdline.split()
    if not words:
        return "?"
    if words[0].startswith("ray::"):
        return words[0].split(".")[0]
    if "-m" in words[:-1]:
        return "python -m " + words[words.index("-m") + 1]
    scripts = [word for word in words[1:] if word.endswith(".py")]
    program = os.path.basename(words[0])  # not the path: the raylet's lies under .../python3.11/...
    return os.path.basename(scripts[0]) if scripts and program.startswith("python") else program


def processes():
    """{pid: (CPU ticks, name)} of every process now."""
    found = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                name = process_name(cmdline.read().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:
            continue
        found[int(pid)] = (int(fields[11]) + int(fields[12]), name)
    return found


def sample():
    return {"time": time.time(), "machine": machine_ticks(), "processes": processes()}


def window_profile(samples, start, end):
    """The samples between start and end: their seconds, the machine's busy share and the CPU
    seconds of each process name, largest first."""
    inside = [entry for entry in samples if start <= entry["time"] <= end]
    if len(inside) < 2:
        raise ValueError(f"fewer than 2 samples between {start:.1f} and {end:.1f}: nothing to profile")
    first, last = inside[0], inside[-1]
    total = last["machine"][0] - first["machine"][0]
    idle = last["machine"][1] - first["machine"][1]
    latest = {}
    for entry in inside:
        latest.update(entry["processes"])
    by_name = {}
    for pid, (ticks, name) in latest.items():
        used = (ticks - first["processes"].get(pid, (0, name))[0]) / TICKS
        by_name[name] = by_name.get(name, 0.0) + used
    return {"seconds": last["time"] - first["time"], "busy": 1 - idle / total if total else 0.0,
            "cpu_seconds": round(sum(by_name.values()), 2),
            "by_process": {name: round(seconds, 2) for name, seconds in
                           sorted(by_name.items(), key=lambda item: -item[1]) if seconds >= 0.05}}


WINDOWS = ("start", "training")


def ray_window(results_dir, window="start"):
    """(trainer start, first batch) of the Ray results JSON in results_dir; for "training", the
    first batch and that time plus the epochs' training time."""
    paths = sorted(glob.glob(os.path.join(results_dir, "**", "ray_results_*workers.json"), recursive=True))
    if not paths:
        raise ValueError(f"no ray_results_*workers.json in {results_dir}: did the command write its results there?")
    with open(paths[-1], encoding="utf-8") as source:
        record = json.load(source)
    first_batch = record["attempts"][0]["first_batch"]
    if window == "training":
        return first_batch, first_batch + sum(record["epoch_times_seconds"])
    return first_batch - record["trainer_start_to_first_batch_seconds"], first_batch


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results-dir", required=True, help="where the command writes its Ray results JSON")
    parser.add_argument("--out", help="write the profile here as JSON too")
    parser.add_argument("--window", choices=WINDOWS, default="start",
                        help="start: trainer start to first batch (the default); training: first batch to the "
                             "end of the epochs' training steps")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command to run")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to profile after --")
    process, samples = subprocess.Popen(command), []
    while process.poll() is None:
        samples.append(sample())
        time.sleep(INTERVAL_SECONDS)
    if process.returncode != 0:
        print(f"startup_profile: the command failed (exit {process.returncode})", file=sys.stderr)
        return process.returncode
    try:
        profile = window_profile(samples, *ray_window(args.results_dir, args.window))
    except ValueError as error:
        print(f"startup_profile: error: {error}", file=sys.stderr)
        return 2
    what = "Trainer start to first batch" if args.window == "start" else "First batch to the end of training"
    print(f"{what}: {profile['seconds']:.1f} s sampled, machine busy {profile['busy']:.0%}, "
          f"{profile['cpu_seconds']:.1f} CPU seconds")
    for name, seconds in profile["by_process"].items():
        print(f"  {seconds:6.2f} s  {name}")
    if args.out:
        with open(args.out, "w", encoding="utf-8") as out:
            json.dump(profile, out, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
