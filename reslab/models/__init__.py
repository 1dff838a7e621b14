"""Model zoo. Importing this package registers every model family."""

from ._registry import count_params, create_model, is_model, list_models, register_model

__all__ = ["count_params", "create_model", "is_model", "list_models", "register_model"]
