"""Pictures for people: landmark overlays, gallery pictures (one scored image cropped to its landmarks) and, with
matplotlib, evaluation plots."""
