"""Letterboxing, image reading and the letterbox cache that training reads."""
