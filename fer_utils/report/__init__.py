"""The report: notebook context and display, and the runner behind ``make report``."""
