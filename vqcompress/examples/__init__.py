"""Bundled examples: a small MLP trained on scikit-learn's digits (``digits``)."""
