"""featlab: the feature space of vision models, studied through the input space."""

from featlab._compat import define_torchvision_op_schemas

__version__ = "0.1.0"

define_torchvision_op_schemas()
