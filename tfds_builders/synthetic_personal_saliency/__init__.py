"""The synthetic_personal_saliency dataset (see README.md)."""
