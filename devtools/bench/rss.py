"""Run a command and report its peak resident set size: `python -m devtools.bench.rss CMD ...`.

Prints one JSON line: the child's exit code, `ru_maxrss` of RUSAGE_CHILDREN (kB on Linux) and the
JSON the child printed last (its result). A fresh measurer per measurement, so the maximum is this
child's alone.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys


def main() -> None:
    completed = subprocess.run(sys.argv[1:], capture_output=True, text=True, check=False)
    maxrss_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    sys.stderr.write(completed.stderr[-5000:])
    lines = completed.stdout.strip().splitlines()
    result = json.loads(lines[-1]) if completed.returncode == 0 and lines else None
    print(json.dumps({"returncode": completed.returncode, "maxrss_kb": maxrss_kb, "result": result}))
    sys.exit(completed.returncode)


if __name__ == "__main__":
    main()
