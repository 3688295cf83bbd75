"""tmeflow: from raw count matrices of a cancer cohort to a tumour-microenvironment atlas and report."""

__version__ = "0.1.0"
