"""personalized_saliency: the PS dataset of Xu et al. (IJCAI 2017), every image viewed 4 times.

Fixations are mapped from the 1920x1080 screen into each image's own pixels; the PSM of an
observer averages the maps of their repeated viewings (testID).
"""

import tensorflow_datasets as tfds

from psm_jax.data.builder import PersonalSaliencyBuilder, PersonalSaliencyConfig
from psm_jax.data.releases.ps import INSTRUCTIONS, read_ps


class Builder(PersonalSaliencyBuilder):
    """PS, one example per image with every participant's fixations and PSM."""

    MANUAL_DOWNLOAD_INSTRUCTIONS = INSTRUCTIONS
    BUILDER_CONFIGS = [
        PersonalSaliencyConfig(
            name="default",
            description="PSMs at 120x160, sigma 1 degree (64 screen px); participants 20/5/5.",
            observer_split=(20, 5, 5),
        )
    ]

    def _read_release(self, dl_manager: tfds.download.DownloadManager):
        return read_ps(dl_manager.manual_dir)
