"""Helpers shipped for tests: run the CLI as a user would, local Ray heads, small stores.

Importable by the project's tests and by users who test their own generators/methods.
"""
