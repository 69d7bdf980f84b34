"""The modules of bench/run, the performance benchmark of obf-exporter."""
