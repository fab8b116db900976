"""Data preparation: training shards (make_shards) and the shipped BRCA1 benchmark data (prepare_brca1)."""
