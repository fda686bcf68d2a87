"""individual_differences: de Haas et al. (2019), or any study, from a long-format fixation table.

The manual_dir holds fixations.csv (or .parquet) and stimuli/; the format is in README.md and in
`psm_jax.data.releases.table`. Observers 80/10/12 as in Strohm et al. (2024) when the table has
102 subjects, else 60/20/20.
"""

import tensorflow_datasets as tfds

from psm_jax.data.builder import PersonalSaliencyBuilder, PersonalSaliencyConfig
from psm_jax.data.releases.table import read_table_release

INSTRUCTIONS = """\
Put the fixations of the study in <manual_dir>/fixations.csv (or fixations.parquet) with the
columns subject, image, x, y, duration_ms and optionally trial, session (x, y in pixels of the
stimulus image, 0-based pixel centres), and the stimuli (for ID: the 700 OSIE images) below
<manual_dir>/stimuli/. tfds_builders/individual_differences/README.md explains how to export the
table from the ID release of de Haas et al. (2019)."""

SIGMA_PX = 24.0
"""ID shows the OSIE stimuli; sigma as OSIE's own code, 24 px at 800x600."""


class Builder(PersonalSaliencyBuilder):
    """ID (or a user's study), one example per image with every observer's fixations and PSM."""

    MANUAL_DOWNLOAD_INSTRUCTIONS = INSTRUCTIONS
    BUILDER_CONFIGS = [
        PersonalSaliencyConfig(
            name="default",
            description="PSMs at 120x160, sigma 24 px; observers 80/10/12 (102 subjects).",
            observer_split=(80, 10, 12),
        )
    ]

    def _read_release(self, dl_manager: tfds.download.DownloadManager):
        return read_table_release(
            dl_manager.manual_dir,
            name="individual_differences",
            instructions=INSTRUCTIONS,
            sigma_px=SIGMA_PX,
        )
