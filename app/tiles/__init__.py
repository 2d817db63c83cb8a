"""Pixels to pictures: scaling, Deep Zoom pyramids and the process pool that builds them."""
