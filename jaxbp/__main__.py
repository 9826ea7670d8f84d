"""Usage: jaxbp COMMAND [--flags]   (or: python -m jaxbp COMMAND [--flags])

Commands:
  train      train an MLP on a dataset; prints the test accuracy, writes learning curves
  evaluate   evaluate a checkpoint on its dataset's test split (--checkpoint)
  predict    predict rows of a .csv/.npy file with a checkpoint (--checkpoint, --input)
  explain    print every Z, A, Δ, dW, db of seed 001's worked example
"""

from jaxbp.cli import run

run()
