"""Pure decisions of the engine (no I/O): heat, segment choice, promotion, ranking."""
