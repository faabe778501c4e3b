"""The package list, which pyproject.toml cannot express (see the comment there).

`find_packages` finds every package under llamaswap_es/; the two resource folders that live at
the top of the repository (migrations/, ui/) are added under their installed names. Everything
else about the build is in pyproject.toml.
"""

from setuptools import find_packages, setup

setup(
    packages=[
        *find_packages(include=["llamaswap_es", "llamaswap_es.*"]),
        "llamaswap_es._migrations",
        "llamaswap_es._ui",
    ]
)
