"""Bring nextflow.config's params block and conf/modules.config's stage blocks in line with the
schema and the stage registry (run after adding a stage or a parameter; the static tests check).
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from nf_static import load_schema, render_params_block, render_withname_block, withname_blocks  # noqa: E402

from tmeflow.stages import pipeline_stage_names  # noqa: E402


def sync_params(schema) -> None:
    path = REPO / "nextflow.config"
    text = path.read_text()
    start = text.index("params {")
    end = text.index("\n}\n", start) + 3
    path.write_text(
        text[:start] + render_params_block(schema).rstrip("\n") + "\n" + text[end:].lstrip("\n").join(["\n", ""])
    )


def sync_modules(schema) -> None:
    path = REPO / "conf" / "modules.config"
    text = path.read_text()
    present = {selector.strip("'\"") for selector, _ in withname_blocks(text)}
    missing = [stage for stage in pipeline_stage_names() if stage.upper() not in present]
    if missing:
        anchor = text.index("    withName: 'MULTIQC'")
        blocks = "".join(render_withname_block(stage, schema).rstrip("\n") + "\n\n" for stage in missing)
        path.write_text(text[:anchor] + blocks + text[anchor:])
    print("added blocks for:", ", ".join(missing) or "none")


if __name__ == "__main__":
    schema = load_schema()
    sync_params(schema)
    sync_modules(schema)
