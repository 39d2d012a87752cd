"""Store → pandas: loaders, cross-image transfer summaries, plots and the report writer.

Python API (every loader accepts a store URI, a path or an open ``Store``)::

    from lrgan_dist import analysis
    df = analysis.load_transfer("runs/quickstart.zarr")       # linearized long table
    rz = analysis.load_realized("runs/quickstart.zarr")       # realized edits
    analysis.summarize_transfer(df)                           # method × region: self vs cross
    analysis.write_report("runs/quickstart.zarr", "report/")  # md, html, parquet, csv

Column names and dtypes: :data:`analysis.TRANSFER_COLUMNS`, :data:`analysis.REALIZED_COLUMNS`
(documented in :mod:`lrgan_dist.analysis.loaders`).
"""
from lrgan_dist.analysis.loaders import (
                      REALIZED_COLUMNS,
                      TRANSFER_COLUMNS,
                      has_transfer,
                      load_directions,
                      load_groups,
                      load_realized,
                      load_samples,
                      load_similarity,
                      load_transfer,
                      open_store,
                      transfer_groups,
)
from lrgan_dist.analysis.report import markdown_table, write_report
from lrgan_dist.analysis.summaries import (
                      box_mask_pairs,
                      box_vs_mask,
                      lambda_sweep,
                      matched_comparison,
                      per_target_locality,
                      realized_agreement,
                      summarize_transfer,
)

__all__ = [
    "TRANSFER_COLUMNS", "REALIZED_COLUMNS", "open_store", "has_transfer", "load_samples", "load_groups",
    "load_directions", "load_transfer", "load_realized", "load_similarity", "transfer_groups",
    "summarize_transfer", "realized_agreement", "matched_comparison", "lambda_sweep", "box_mask_pairs",
    "box_vs_mask", "per_target_locality", "write_report", "markdown_table",
]
