"""osie_personal: OSIE (Xu et al., JoV 2014) as per-observer saliency data.

Every observer of the release free-viewed every image, so each (image, observer) pair has a PSM.
The number of images, observers and the image size are read from the release.
"""

import tensorflow_datasets as tfds

from psm_jax.data.builder import PersonalSaliencyBuilder, PersonalSaliencyConfig
from psm_jax.data.releases.osie import INSTRUCTIONS, read_osie


class Builder(PersonalSaliencyBuilder):
    """OSIE, one example per image with every observer's fixations and PSM."""

    MANUAL_DOWNLOAD_INSTRUCTIONS = INSTRUCTIONS
    BUILDER_CONFIGS = [
        PersonalSaliencyConfig(
            name="default",
            description="PSMs at 120x160, sigma 24 px at 800x600; observers 9/3/3.",
            observer_split=(9, 3, 3),
        )
    ]

    def _read_release(self, dl_manager: tfds.download.DownloadManager):
        return read_osie(dl_manager.manual_dir)
