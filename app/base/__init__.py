"""Foundations every other room uses: typed errors, paths, numeric helpers. Imports nothing from app."""
