"""The personalized_saliency dataset (see README.md)."""
