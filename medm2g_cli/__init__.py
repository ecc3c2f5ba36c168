"""medm2g: MedM2G unified medical multi-modal generation (text, chest X-ray, CT, MRI).

The package is a typed Python API (``medm2g_cli.api`` and the sub-packages) under a Typer CLI
(``medm2g_cli.main``). Importing the package is cheap: torch and the model code are imported
only by the functions that need them.
"""

__version__ = "0.1.0"
