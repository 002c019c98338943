# SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
"""`make stress`: long runs, not part of `make check`. They use the integration tests'
fixtures (real registry, fault proxy, real lazy mounts): the same plugins as
tests/integration/conftest.py, which is loaded here for its list."""

import importlib.util
import os

_spec = importlib.util.spec_from_file_location(
    "integration_conftest",
    os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "integration",
                 "conftest.py"))
_integration = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_integration)  # puts tests/integration/lib on sys.path

pytest_plugins = _integration.pytest_plugins
pytest_configure = _integration.pytest_configure
