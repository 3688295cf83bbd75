"""Cell-cell communication (``tmeflow communication``): LIANA interactions per condition and sample
(:mod:`.core`), CellChat-style signalling pathways, pathway-level tests and signalling roles
(:mod:`.signalling`), figures (:mod:`.plots`). Every name is re-exported here, so
``tmeflow.communication:cli`` and ``from tmeflow.communication import X`` are stable.
"""

from .core import *  # noqa: F401,F403
from .core import (  # noqa: F401
    DIFF_COLUMNS,
    PROPORTION_COLUMNS,
    SKIP_COLUMNS,
    check_lognorm,
    cli,
    count_strength,
    differential_interactions,
    liana_on,
    load_resource,
    pathway_map,
    pathway_table,
    plot_pathways,
    proportion_tests,
    run_communication,
    run_liana,
    sample_call_counts,
)
from .plots import (  # noqa: F401
    plot_diff_dots,
    plot_pair_heatmaps,
    plot_pathway_circles,
    plot_pathway_diff_heatmap,
    plot_roles_heatmap,
)
from .signalling import (  # noqa: F401
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
