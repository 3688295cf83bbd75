"""``python -m tmeflow.multiqc_launch ARGS``: MultiQC's command line, without the AI-metadata copy of the report.

MultiQC 1.35 calls ``report.add_ai_summary()`` whatever ``--no-ai`` says (``core/write_results.py``), and
that embeds in the page, base64-encoded (``aiReportMetadataBase64`` in ``head.html``), the content of every
section (``multiqc.core.ai.ai_section_metadata``): each HTML custom-content section -- here every figure,
itself a base64 PNG -- is in the page twice, and again in ``multiqc_data/llms-full.txt``. No config key
turns this off (``no_ai`` only hides the buttons; ``ai_summary`` only stops the LLM call). With
``--no-ai`` the page's scripts never read that metadata, so this launcher keeps its structure (the page's
``JSON.parse`` needs it) and drops each section's ``content``/``content_before_plot``. Any other MultiQC
version without ``ai_section_metadata`` runs unchanged.
"""

from __future__ import annotations

import sys


def drop_ai_section_content() -> bool:
    """Make MultiQC's AI metadata carry no section content; return whether the hook was found."""
    try:
        from multiqc.core import ai
    except ImportError:
        return False
    original = getattr(ai, "ai_section_metadata", None)
    if original is None:
        return False

    def without_content():
        metadata = original()
        for section in metadata.sections.values():
            section.content = None
            section.content_before_plot = None
        return metadata

    ai.ai_section_metadata = without_content
    return True


def main() -> None:
    """Run MultiQC with this process's arguments (without its AI section under ``--no-ai``)."""
    if "--no-ai" in sys.argv[1:]:
        drop_ai_section_content()
    from multiqc.__main__ import run_multiqc

    sys.argv[0] = "multiqc"
    run_multiqc()


if __name__ == "__main__":
    main()
