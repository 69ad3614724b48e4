"""Each stack component's CPU while a command runs, for benchmarks that print none of their own.

    .venv/bin/python -m bench.around --home ../base/.stack --cwd ../base -- \\
        .venv/bin/python bench/pipeline.py persist --rooms 2000 --messages 100000

It is how a commit from before the benchmarks reported CPU (the performance issue's filing commit,
017f57e) is measured beside today's code on the same machine: that commit's stack, driven by its
own benchmark, read from /proc the way ``bench/proc_cpu.py`` reads ours (each component's process
tree, from the pid files of the stack at ``--home``). The command's last line of output, when it is
a JSON object, is printed again with ``cpu_s`` and, when it names how many messages it sent or
stored, CPU per message: our processes (relays, controller) and the whole stack.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.proc_cpu import StackCpu, ms_per_message


def per_message(result: dict[str, Any], cpu: dict[str, float]) -> dict[str, float]:
    """``cpu`` per message of ``result`` (its ``sent`` or ``stored``), in ms; empty without."""
    count = result.get("sent") or result.get("stored")
    if not isinstance(count, int | float) or count <= 0:
        return {}
    return ms_per_message(cpu, count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--home", type=Path, required=True, help="the stack's CHATSTACK_HOME")
    parser.add_argument("--cwd", type=Path, default=None, help="where the command runs")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="after --")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("a command to run is needed after --")
    stack_cpu = StackCpu(args.home)
    stack_cpu.start()
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False, cwd=args.cwd)
    cpu = {k: v for k, v in stack_cpu.stop().items() if v > 0}
    lines = done.stdout.strip().splitlines()
    try:
        result = json.loads(lines[-1]) if lines else {}
    except json.JSONDecodeError:
        result = {}
    if not isinstance(result, dict):
        result = {}
    print(json.dumps({**result, "cpu_s": cpu, **per_message(result, cpu)}))
    sys.exit(done.returncode)


if __name__ == "__main__":
    main()
