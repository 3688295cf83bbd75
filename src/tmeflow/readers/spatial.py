"""Space Ranger spatial pieces: tissue positions, scale factors and the tissue image."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import TmeflowInputError
from ..log import get_logger

logger = get_logger(__package__)


# ---------------------------------------------------------------------------------------------
# Spatial pieces
# ---------------------------------------------------------------------------------------------

_POSITION_COLUMNS = ["barcode", "in_tissue", "array_row", "array_col", "pxl_row_in_fullres", "pxl_col_in_fullres"]


def _read_positions(spatial_dir: Path, sample: str) -> tuple[Path, pd.DataFrame]:
    """Spot positions indexed by barcode (v2 ``tissue_positions.csv`` with header or v1 without)."""
    for name in ("tissue_positions.csv", "tissue_positions_list.csv"):
        path = spatial_dir / name
        if path.is_file():
            break
    else:
        raise TmeflowInputError(
            "no tissue_positions.csv or tissue_positions_list.csv in spatial/", file=spatial_dir, sample=sample
        )
    try:
        with open(path, encoding="utf-8") as handle:
            first = handle.readline().split(",")
        has_header = len(first) > 1 and not first[1].strip().lstrip("-").isdigit()
        table = pd.read_csv(path, header=0 if has_header else None, dtype={0: str})
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError) as error:
        raise TmeflowInputError(f"cannot read positions file: {error}", file=path, sample=sample) from error
    if table.shape[1] != 6:
        raise TmeflowInputError(
            f"positions file has {table.shape[1]} columns, expected 6 ({', '.join(_POSITION_COLUMNS)})",
            file=path,
            sample=sample,
        )
    table.columns = _POSITION_COLUMNS
    table["barcode"] = table["barcode"].astype(str)
    if table["barcode"].duplicated().any():
        raise TmeflowInputError(
            f"duplicated barcode {table['barcode'][table['barcode'].duplicated()].iloc[0]} in the positions file",
            file=path,
            sample=sample,
        )
    try:
        for column in _POSITION_COLUMNS[1:4]:
            table[column] = pd.to_numeric(table[column], errors="raise").astype(np.int64)
        for column in _POSITION_COLUMNS[4:]:
            table[column] = pd.to_numeric(table[column], errors="raise").astype(np.float64)
    except (ValueError, TypeError) as error:
        raise TmeflowInputError(f"non-numeric or missing position values: {error}", file=path, sample=sample) from error
    return path, table.set_index("barcode")


def _read_scalefactors(spatial_dir: Path, sample: str) -> dict:
    path = spatial_dir / "scalefactors_json.json"
    if not path.is_file():
        logger.warning("sample %s: no scalefactors_json.json in %s; scale factors left empty", sample, spatial_dir)
        return {}
    try:
        scalefactors = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as error:
        raise TmeflowInputError(f"cannot parse scale factors JSON: {error}", file=path, sample=sample) from error
    if not isinstance(scalefactors, dict):
        raise TmeflowInputError("scale factors JSON is not an object", file=path, sample=sample)
    return scalefactors


def _read_image(path: Path, sample: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            if image.mode not in ("RGB", "RGBA"):
                image = image.convert("RGB")
            return np.asarray(image)
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise TmeflowInputError(f"cannot read tissue image: {error}", file=path, sample=sample) from error
