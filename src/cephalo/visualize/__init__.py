"""Pictures for people: landmark overlays (and, with matplotlib, evaluation plots)."""
