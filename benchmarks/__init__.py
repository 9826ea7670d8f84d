"""jaxbp's benchmark harness: `python benchmarks/run.py --suite quick|full`."""
