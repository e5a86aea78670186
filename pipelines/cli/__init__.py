from pipelines.cli.app import main

__all__ = ["main"]
