"""``memoryos bench``: benchmarks that print figures and write JSON (they are not tests)."""
