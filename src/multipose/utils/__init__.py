"""Small helpers shared by the entry points (config printing, instantiation, run bookkeeping)."""
