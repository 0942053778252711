"""Cross-validated evaluation: metrics in plain numpy, the CV loop, reports."""
