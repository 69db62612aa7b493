"""Who interrupts a training process: over a window, the CPU time and context switches of each
thread of the processes whose command line holds PATTERN, and the processes of the machine
that wake up most often (docs/PERFORMANCE.md, "Ray's other processes while it trains").

    .venv/bin/python -m tools.thread_profile "ray::RayTrainWorker" --delay 55 --window 25

It waits for a matching process, then DELAY seconds (to reach a steady epoch), then reads
/proc twice, WINDOW seconds apart. A thread's involuntary switches count the times another
task took its core; a process's voluntary switches count its threads' wake-ups. Linux only.
"""

import argparse
import os
import sys
import time

from tools.startup_profile import TICKS, process_name


def read(path):
    with open(path, encoding="utf-8", errors="replace") as source:
        return source.read()


def switches(status):
    """(voluntary, involuntary) context switches from a /proc status file."""
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return int(fields["voluntary_ctxt_switches"]), int(fields["nonvoluntary_ctxt_switches"])


def threads(pid):
    """{thread id: (name, CPU ticks, voluntary, involuntary)} of one process; {} once it is gone."""
    found = {}
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            stat = read(f"/proc/{pid}/task/{tid}/stat")
            fields = stat.rsplit(")", 1)[1].split()
            found[int(tid)] = (stat[stat.index("(") + 1:stat.rindex(")")], int(fields[11]) + int(fields[12]),
                               *switches(read(f"/proc/{pid}/task/{tid}/status")))
    except (OSError, ValueError, KeyError):
        return {}
    return found


def command_lines():
    """{pid: command line} of every process now (to match the pattern: startup_profile names them)."""
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            found[int(pid)] = read(f"/proc/{pid}/cmdline").replace("\0", " ").strip()
        except OSError:
            pass
    return found


def by_name(before, after, seconds):
    """{thread name: [CPU seconds, voluntary, involuntary switches per second]}, summed over threads."""
    totals = {}
    for tid, (name, ticks, voluntary, involuntary) in after.items():
        old = before.get(tid, (name, 0, 0, 0))
        entry = totals.setdefault(name, [0.0, 0.0, 0.0])
        entry[0] += (ticks - old[1]) / TICKS
        entry[1] += (voluntary - old[2]) / seconds
        entry[2] += (involuntary - old[3]) / seconds
    return totals


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pattern", help="a string in the command line of the processes to profile")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds to wait once one is found")
    parser.add_argument("--window", type=float, default=20.0, help="seconds between the two readings")
    parser.add_argument("--wait", type=float, default=300.0, help="seconds to wait for a matching process")
    args = parser.parse_args(argv)
    deadline = time.time() + args.wait

    def matching():  # not this tool, nor a wrapper that names it
        return [pid for pid, line in command_lines().items()
                if args.pattern in line and "tools.thread_profile" not in line]
    while not matching():
        if time.time() > deadline:
            print(f"thread_profile: error: no process whose command line holds '{args.pattern}' "
                  f"within {args.wait:.0f} s", file=sys.stderr)
            return 2
        time.sleep(0.5)
    time.sleep(args.delay)
    targets = matching()  # again: all of them have started by now
    before = {pid: threads(pid) for pid in command_lines()}
    started = time.time()
    time.sleep(args.window)
    after, seconds = {pid: threads(pid) for pid in before}, time.time() - started  # one reading for both tables
    names = {pid: process_name(line) for pid, line in command_lines().items()}
    for pid in targets:
        totals = by_name(before.get(pid, {}), after.get(pid, {}), seconds)
        cpu = sum(total[0] for total in totals.values())
        print(f"{names.get(pid, '?')} (pid {pid}): {cpu:.2f} CPU s in {seconds:.1f} s")
        for name, (cpu, voluntary, involuntary) in sorted(totals.items(), key=lambda item: -item[1][0])[:6]:
            print(f"  {name:18} {cpu:6.2f} CPU s, {voluntary:6.0f} wake-ups/s, {involuntary:6.0f} taken off its core/s")
    wakers = []
    for pid, old in before.items():
        totals = by_name(old, after[pid], seconds)
        wakers.append((sum(t[1] for t in totals.values()), sum(t[0] for t in totals.values()), pid))
    print("Most frequent wakers on the machine:")
    for wakeups, cpu, pid in sorted(wakers, reverse=True)[:12]:
        print(f"  {wakeups:6.0f} wake-ups/s {cpu:6.2f} CPU s  {names.get(pid, '?')} (pid {pid})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
