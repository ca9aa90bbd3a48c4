"""One module per pipeline stage: a thin Faust agent around a pure, synchronous core."""
