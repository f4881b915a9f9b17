"""Auto-GPT: A GPT powered AI Assistant (mirrors autogpt/__main__.py at v0.4.7)"""
import autogpt.app.cli

if __name__ == "__main__":
    autogpt.app.cli.main()
