"""Export of explanations and results: overlays, grid figures, HTML report, JSON / CSV files."""

from scouter.export.overlay import explanation_grid, overlay_map, save_overlays, to_uint8_image
from scouter.export.report import png_data_uri, write_html_report
from scouter.export.results_io import (
    ResultsMismatchError,
    atomic_write_bytes,
    atomic_write_text,
    file_sha256,
    read_results,
    recover_results_folder,
    write_per_image_csv,
    write_results,
    write_results_json,
)

__all__ = [
    "ResultsMismatchError",
    "atomic_write_bytes",
    "atomic_write_text",
    "explanation_grid",
    "file_sha256",
    "overlay_map",
    "png_data_uri",
    "read_results",
    "recover_results_folder",
    "save_overlays",
    "to_uint8_image",
    "write_html_report",
    "write_per_image_csv",
    "write_results",
    "write_results_json",
]
