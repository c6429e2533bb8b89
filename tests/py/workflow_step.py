"""Prints the `run:` script of one step of a GitHub Actions workflow.

Usage: workflow_step.py WORKFLOW.yml "STEP NAME"

Read with ruamel.yaml (check-jsonschema's YAML reader, not pgflare's), so
the tests run exactly the script the workflow file holds; refuses a step
whose shell is not `bash` (the tests run it as `shell: bash` does).
"""

import sys

from ruamel.yaml import YAML


def main() -> int:
    path, name = sys.argv[1], sys.argv[2]
    with open(path, encoding="utf-8") as f:
        doc = YAML(typ="safe").load(f)
    top = (doc.get("defaults") or {}).get("run", {}).get("shell")
    for job in doc["jobs"].values():
        for step in job.get("steps", []):
            if step.get("name") == name:
                shell = step.get("shell") or (job.get("defaults") or {}).get("run", {}).get("shell") or top
                # The tests run the script as `shell: bash` does; another
                # shell (or none: `bash -e`, no pipefail) would differ.
                if shell != "bash":
                    print(f"{path}: step {name!r} runs with shell {shell!r}, not bash", file=sys.stderr)
                    return 1
                sys.stdout.write(step["run"])
                return 0
    print(f"{path}: no step named {name!r}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
