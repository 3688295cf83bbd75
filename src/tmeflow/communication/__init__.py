"""Cell-cell communication (``tmeflow communication``).

LIANA interactions per condition and sample, counts and strengths (:mod:`.core`, which also documents the
method and the outputs), sample-level proportion tests and differential interactions (:mod:`.differential`),
CellChat-style signalling pathways, pathway-level tests and signalling roles (:mod:`.signalling`), figures
(:mod:`.plots`) and the stage that writes every output (:mod:`.run`). Every public name is re-exported here,
so ``tmeflow.communication:cli`` and ``from tmeflow.communication import X`` are stable.
"""

from .core import (
    PATHWAY_COLUMNS,
    SKIP_COLUMNS,
    CommunicationSettings,
    check_lognorm,
    count_strength,
    groups_with_cells,
    liana_on,
    load_resource,
    pathway_map,
    pathway_table,
    run_liana,
)
from .differential import (
    DIFF_COLUMNS,
    MIN_SAMPLES,
    PROPORTION_COLUMNS,
    PSEUDO,
    complex_values,
    differential_interactions,
    group_means,
    proportion_tests,
    sample_call_counts,
)
from .plots import (
    plot_diff_dots,
    plot_pair_heatmaps,
    plot_pathway_circles,
    plot_pathway_diff_heatmap,
    plot_roles_heatmap,
)
from .run import (
    PATHWAY_TABLE_COLUMNS,
    TOP_PATHWAYS_IN_REPORT,
    cli,
    plot_pathways,
    run_communication,
    write_pathway_table,
)
from .signalling import (
    PATHWAY_TEST_COLUMNS,
    ROLE_COLUMNS,
    curated_pathway_map,
    flow_betweenness,
    information_centrality,
    ligand_pathways,
    network_roles,
    pathway_of,
    pathway_tests,
    signalling_roles,
)

__all__ = [
    "CommunicationSettings",
    "DIFF_COLUMNS",
    "MIN_SAMPLES",
    "PATHWAY_COLUMNS",
    "PATHWAY_TABLE_COLUMNS",
    "PATHWAY_TEST_COLUMNS",
    "PROPORTION_COLUMNS",
    "PSEUDO",
    "ROLE_COLUMNS",
    "SKIP_COLUMNS",
    "TOP_PATHWAYS_IN_REPORT",
    "check_lognorm",
    "cli",
    "complex_values",
    "count_strength",
    "curated_pathway_map",
    "differential_interactions",
    "flow_betweenness",
    "group_means",
    "groups_with_cells",
    "information_centrality",
    "liana_on",
    "ligand_pathways",
    "load_resource",
    "network_roles",
    "pathway_map",
    "pathway_of",
    "pathway_table",
    "pathway_tests",
    "plot_diff_dots",
    "plot_pair_heatmaps",
    "plot_pathway_circles",
    "plot_pathway_diff_heatmap",
    "plot_pathways",
    "plot_roles_heatmap",
    "proportion_tests",
    "run_communication",
    "run_liana",
    "sample_call_counts",
    "signalling_roles",
    "write_pathway_table",
]
