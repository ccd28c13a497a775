"""Imports every model family module so their registrations run."""
