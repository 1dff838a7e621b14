"""reslab: reproduce four papers on improved deep residual networks."""

__version__ = "0.1.0"
