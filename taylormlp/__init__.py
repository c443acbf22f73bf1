"""Replace whole MLP blocks by K-means expansion points plus a Taylor expansion."""
__version__ = "0.1.0"
