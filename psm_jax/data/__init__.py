"""Data: fixations -> saliency maps, release readers, TFDS builder base, grain pipelines."""
