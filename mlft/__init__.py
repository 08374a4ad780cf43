"""mlft: fine-tune multilingual transformer encoders from one command line."""

__version__ = "0.1.0"
