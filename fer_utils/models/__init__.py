"""Model families behind one registry: ``create_model(name, num_classes, in_chans, ...)``."""
from fer_utils.models import families  # noqa: F401  (runs every @register_model)
from fer_utils.models.inputs import create_model_for, input_record, model_and_data
from fer_utils.models.registry import (count_forward_flops, count_parameters, create_model, list_models, model_entry,
                                      register_model)

__all__ = ["count_forward_flops", "count_parameters", "create_model", "create_model_for", "input_record", "list_models",
           "model_and_data", "model_entry", "register_model"]
