"""One module per benchmark scenario (see bench/__main__.py)."""
