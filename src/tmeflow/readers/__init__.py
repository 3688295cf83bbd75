"""Readers for single-cell and spatial count data, one AnnData per sample.

:func:`read_counts` turns any supported single-cell file into an AnnData with raw counts in ``X``
(``scipy.sparse.csr_matrix``, float32), barcodes as ``obs_names`` and unique gene symbols as
``var_names``. :func:`read_spatial` does the same for a Space Ranger ``outs/`` folder and adds the
spot positions, scale factors and tissue images in the layout scanpy and squidpy expect.
:func:`detect_format` says which reader a path needs.

Supported inputs (:func:`detect_format` names):

``10x_h5``
    Cell Ranger feature-barcode HDF5 (v3+, only ``Gene Expression`` features are kept) or the
    Cell Ranger 2 layout (one group per genome).
``10x_mtx``
    A folder with ``matrix.mtx[.gz]``, ``barcodes.tsv[.gz]`` and ``features.tsv[.gz]`` (v3) or
    ``genes.tsv[.gz]`` (v2), file names optionally sharing a prefix (GEO style); a folder containing
    ``filtered_feature_bc_matrix/`` (or ``outs/filtered_feature_bc_matrix/``); or the
    ``matrix.mtx[.gz]`` file itself.
``h5ad``
    AnnData; counts from ``layers['counts']``, else ``raw.X``, else ``X``.
``dense``
    A delimited text table (tab, comma or whitespace; optionally gzipped), genes x cells or
    cells x genes, with optional leading ``#`` comment lines (BD Rhapsody exports).
``spaceranger``
    A Space Ranger ``outs/`` folder (a ``spatial/`` folder beside ``filtered_feature_bc_matrix.h5``
    or ``filtered_feature_bc_matrix/``), or a folder containing ``outs/``.

Orientation of dense tables
---------------------------
The header is the first line that does not start with ``#``. If the data rows have one field
more than the header, the header has no corner cell (R ``write.table`` style) and every header
field is a column label; otherwise the first header field is the corner cell. Which axis holds the
genes is then decided by, in order:

1. the corner cell, when it names an axis (``gene``, ``symbol``, ``gene_id``... -> genes in rows;
   ``cell``, ``barcode``, ``Cell_Index``... -> cells in rows);
2. the fraction of labels on each axis found in the bundled gene list
   (``resources/gene_positions/genes_*_xclone.tsv``, symbols and Ensembl ids, human and mouse),
   when that list ships with the package and one axis has at least 50% known genes and 30 points
   more than the other;
3. a label-shape score (gene-like: Ensembl id, or a symbol of letters/digits/``-``/``.`` without
   ``_``, up to 20 characters; cell-like: a stretch of 8+ nucleotides, a bare number, or a
   ``cell``/``barcode``/``spot`` prefix): the axis whose score is higher by 0.3 or more holds
   the genes;
4. otherwise genes in rows (the usual convention of GEO, inferCNV and Seurat exports), with a
   warning.

Validation
----------
Every reader checks the matrix: no cells or no genes, NaN or infinite values, negative values or
an all-zero matrix raise :class:`~tmeflow.errors.TmeflowInputError`. Non-integer values are logged
as a warning with their fraction, or raise with ``strict_counts=True``.

Package layout: :mod:`.detection` (format detection), :mod:`.formats` (10x h5/mtx, h5ad),
:mod:`.dense` (text tables), :mod:`.checks` (``_finalise``), :mod:`.spatial` (Space Ranger pieces),
:mod:`.core` (``read_counts``, ``read_spatial``); every name is importable from ``tmeflow.readers``.
"""

from __future__ import annotations

from .detection import (  # noqa: F401
    FORMATS,
    _HDF5_MAGIC,
    _GZIP_MAGIC,
    _DENSE_SUFFIXES,
    _NOT_TABLES,
    _SYMBOL,
    _CELL_LIKE,
    _NUCLEOTIDES,
    _GENE_CORNERS,
    _CELL_CORNERS,
    _SYMBOL_COLUMNS,
    detect_format,
    _resolve,
    _head_bytes,
    _looks_like_text_table,
    _hdf5_kind,
    _resolve_dir,
    _missing_mtx_companion,
    _spaceranger_counts,
    _find,
    _mtx_files,
)
from .formats import (  # noqa: F401
    _decode,
    _read_10x_h5,
    _csc_cells,
    _read_10x_h5_v3,
    _read_10x_h5_v2,
    _open_text,
    _read_lines_table,
    _mmread,
    _mmread_plain,
    _read_10x_mtx,
    _anndata,
    _unique_names,
    _read_h5ad,
    _looks_log_normalised,
    _symbols_as_names,
)
from .dense import (  # noqa: F401
    _DENSE_CHUNK_VALUES,
    _split,
    _read_dense,
    _compression,
    _known_genes,
    _gene_score,
    _known_fraction,
    _genes_in_rows,
)
from .checks import (  # noqa: F401
    _finalise,
)
from .spatial import (  # noqa: F401
    _POSITION_COLUMNS,
    _read_positions,
    _read_scalefactors,
    _read_image,
)
from .core import (  # noqa: F401
    read_counts,
    read_spatial,
)
