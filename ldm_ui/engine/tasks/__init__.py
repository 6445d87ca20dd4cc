"""One module per task; engine/registry.py maps request types to them."""
