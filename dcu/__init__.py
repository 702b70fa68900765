"""dcu: machine unlearning driven by dataset condensation.

    import dcu
    splits = dcu.data.load("digits")
    model, meta = dcu.load_checkpoint("original.pt")
"""
__version__ = "0.1.0"

from . import data, forget, models  # noqa: E402
from .checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from .models import create_model, list_models  # noqa: E402
from .train import TrainConfig, accuracy, train  # noqa: E402

__all__ = ["data", "forget", "models", "load_checkpoint", "save_checkpoint", "create_model", "list_models",
           "TrainConfig", "train", "accuracy", "__version__"]
