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

from .checks import (  # noqa: F401
    _finalise,
)
from .core import (  # noqa: F401
    read_counts,
    read_spatial,
)
from .dense import (  # noqa: F401
    _DENSE_CHUNK_VALUES,
    _compression,
    _gene_score,
    _genes_in_rows,
    _known_fraction,
    _known_genes,
    _read_dense,
    _split,
)
from .detection import (  # noqa: F401
    _CELL_CORNERS,
    _CELL_LIKE,
    _DENSE_SUFFIXES,
    _GENE_CORNERS,
    _GZIP_MAGIC,
    _HDF5_MAGIC,
    _NOT_TABLES,
    _NUCLEOTIDES,
    _SYMBOL,
    _SYMBOL_COLUMNS,
    FORMATS,
    _find,
    _hdf5_kind,
    _head_bytes,
    _looks_like_text_table,
    _missing_mtx_companion,
    _mtx_files,
    _resolve,
    _resolve_dir,
    _spaceranger_counts,
    detect_format,
)
from .formats import (  # noqa: F401
    _anndata,
    _csc_cells,
    _decode,
    _looks_log_normalised,
    _mmread,
    _mmread_plain,
    _open_text,
    _read_10x_h5,
    _read_10x_h5_v2,
    _read_10x_h5_v3,
    _read_10x_mtx,
    _read_h5ad,
    _read_lines_table,
    _symbols_as_names,
    _unique_names,
)
from .spatial import (  # noqa: F401
    _POSITION_COLUMNS,
    _read_image,
    _read_positions,
    _read_scalefactors,
)
