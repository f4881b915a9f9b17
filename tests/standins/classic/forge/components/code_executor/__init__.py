from .code_executor import CodeExecutorComponent, CodeExecutorConfiguration

__all__ = ["CodeExecutorComponent", "CodeExecutorConfiguration"]
