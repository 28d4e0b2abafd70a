"""On PYTHONPATH, makes this interpreter and every kernel it starts one where the demo and fleet
extras are not installed (tests/test_core_install.py): importing Locust, prometheus_client or
Dagster fails as it would after ``pip install dbperf-kit`` alone."""

import sys

EXTRAS = ("locust", "prometheus_client", "dagster", "gevent")


class NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in EXTRAS:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, NotInstalled())
