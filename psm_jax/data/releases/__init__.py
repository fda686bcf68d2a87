"""Readers that turn a raw eye-tracking release into a `Release`: images, observers, fixations.

One module per release layout (OSIE, PS, a long-format fixation table such as ID's, the synthetic
generator). Each reader only parses its layout into the common `Release`; the saliency maps, the
splits and the TFDS records are made from that by code shared by all datasets.
"""

from psm_jax.data.releases.base import Release, as_rgb_jpeg, find_images, image_size
from psm_jax.data.releases.osie import read_osie
from psm_jax.data.releases.ps import read_ps, read_ps_fixations
from psm_jax.data.releases.table import read_fixation_table, read_table_release

__all__ = [
    "as_rgb_jpeg",
    "Release",
    "find_images",
    "image_size",
    "read_fixation_table",
    "read_osie",
    "read_ps",
    "read_ps_fixations",
    "read_table_release",
]
