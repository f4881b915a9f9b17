"""Mirrors autogpt/commands/file_operations.py at v0.2.2: each command resolves its own path."""

from autogpt.workspace import path_in_workspace


def read_file(filename: str) -> str:  # file_operations.py:84
    try:
        filepath = path_in_workspace(filename)
        with open(filepath, "r", encoding="utf-8") as f:
            return f.read()
    except Exception as e:
        return f"Error: {str(e)}"


def write_to_file(filename: str, text: str) -> str:  # file_operations.py:136
    try:
        filepath = path_in_workspace(filename)
        os_dir = filepath.parent
        os_dir.mkdir(parents=True, exist_ok=True)
        with open(filepath, "w", encoding="utf-8") as f:
            f.write(text)
        return "File written to successfully."
    except Exception as e:
        return f"Error: {str(e)}"
