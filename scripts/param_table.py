#!/usr/bin/env python3
"""Print depth_node's parameter table (markdown) from depth_ros/node/params.py; README.md holds this table
(test/test_launch_static.py checks that it is current). ``--write`` replaces it in README.md."""
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from depth_ros.node import params as P  # noqa: E402

HEAD = "| Parameter | Type | Default | Constraints | Description |\n|---|---|---|---|---|\n"
TYPES = {str: "string", float: "double", int: "int", bool: "bool", list: "double[]"}


def table() -> str:
    rows = []
    for spec in P.PARAMS:
        rows.append(f"| `{spec.name}` | {TYPES[spec.type]} | `{json.dumps(spec.default)}` | {spec.constraints_text()} "
                    f"| {spec.description} |")
    return HEAD + "\n".join(rows) + "\n"


def replace_in(text: str) -> str:
    start = text.index(HEAD)
    end = text.index("\n\n", start)
    return text[:start] + table() + text[end + 1:]


if __name__ == "__main__":
    if "--write" in sys.argv[1:]:
        readme = REPO / "README.md"
        readme.write_text(replace_in(readme.read_text()))
    else:
        print(table(), end="")
