"""featlab: the feature space of vision models, studied through the input space."""

__version__ = "0.1.0"
