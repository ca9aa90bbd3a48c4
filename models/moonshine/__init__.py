"""Moonshine base English: its packaged ``.ort`` graphs read, our own graphs and search."""
