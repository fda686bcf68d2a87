"""synthetic_personal_saliency: generated scenes and simulated observers (no download).

`psm_jax.data.synthetic` describes the generator. The metadata holds each observer's true category
preference (`release.observer_preferences`), to test whether learned embeddings recover it.
"""

import dataclasses

import tensorflow_datasets as tfds

from psm_jax.data.builder import PersonalSaliencyBuilder, PersonalSaliencyConfig
from psm_jax.data.synthetic import SyntheticSpec, generate_release


@dataclasses.dataclass
class SyntheticConfig(PersonalSaliencyConfig):
    """A PersonalSaliencyConfig with the generator's spec."""

    spec: SyntheticSpec = SyntheticSpec()


class Builder(PersonalSaliencyBuilder):
    """Synthetic scenes, one example per image with every simulated observer's fixations and PSM."""

    BUILDER_CONFIGS = [
        SyntheticConfig(
            name="default",
            description="500 scenes at 240x320, 30 observers (20/5/5), 4 viewings; quick start.",
            spec=SyntheticSpec(),
            observer_split=(20, 5, 5),
        ),
        *(
            SyntheticConfig(
                name=f"seed{seed}",
                description=f"The default with generator seed {seed}: new scenes and observers, "
                "for checking settings on data they were not chosen on (results across draws).",
                spec=SyntheticSpec(seed=seed),
                observer_split=(20, 5, 5),
            )
            for seed in (1, 2)
        ),
        SyntheticConfig(
            name="tiny",
            description="30 scenes at 120x160, 8 observers (4/2/2), 4 viewings; for tests.",
            spec=SyntheticSpec(num_images=30, num_observers=8, image_size=(120, 160), sigma_px=5.0),
            observer_split=(4, 2, 2),
        ),
    ]
    DEFAULT_BUILDER_CONFIG_NAME = "default"

    def _read_release(self, dl_manager: tfds.download.DownloadManager):
        return generate_release(self.builder_config.spec)
