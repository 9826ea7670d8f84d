"""jaxbp: multilayer perceptrons trained with hand-written, jitted backpropagation in JAX."""

from jaxbp import datasets, optim, parallel, per_sample
from jaxbp.activations import register_activation
from jaxbp.api import backward, check_pending, evaluate, forward, predict, train_step
from jaxbp.backends import use_cpu_cores
from jaxbp.checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from jaxbp.fit import DivergenceError, FitResult, Schedule, fit
from jaxbp.lbfgs import fit_lbfgs
from jaxbp.model import MLP, Cache, init
from jaxbp.model_file import SavedModel, load_model
from jaxbp.population import PopulationResult, fit_population
from jaxbp.step import train_step_jit

__all__ = [
    "MLP",
    "Cache",
    "Checkpoint",
    "CheckpointError",
    "DivergenceError",
    "FitResult",
    "PopulationResult",
    "SavedModel",
    "Schedule",
    "backward",
    "check_pending",
    "datasets",
    "evaluate",
    "fit",
    "fit_lbfgs",
    "fit_population",
    "forward",
    "init",
    "load_checkpoint",
    "load_model",
    "optim",
    "parallel",
    "per_sample",
    "predict",
    "register_activation",
    "save_checkpoint",
    "train_step",
    "train_step_jit",
    "use_cpu_cores",
]
__version__ = "0.1.0"
