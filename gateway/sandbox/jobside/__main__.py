"""Starts the zygote: the gateway runs `python -I -S jobside/__main__.py CTRL_FD` with an empty environment.

Isolated mode leaves this folder off sys.path; it is made importable here as the package `jobside` (not under
the gateway's name: a job must not see it) before the zygote is imported from it.
"""

import importlib
import importlib.util
import os
import sys

PACKAGE = "jobside"


def import_package(name: str) -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    spec = importlib.util.spec_from_file_location(name, os.path.join(here, "__init__.py"),
                                                  submodule_search_locations=[here])
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load the job side from {here}")
    package = importlib.util.module_from_spec(spec)
    sys.modules[name] = package
    spec.loader.exec_module(package)


if __name__ == "__main__":
    import_package(PACKAGE)
    importlib.import_module(f"{PACKAGE}.zygote").main()
