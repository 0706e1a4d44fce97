"""Runs on disk: the recipe that makes one, its lock and outputs, bundles and model cards."""
