from .schema import AssistantFunctionCall

__all__ = ["AssistantFunctionCall"]
