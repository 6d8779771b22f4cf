"""The engine: workflow registry, the context of a run, and execution with replay."""
