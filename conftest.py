"""Root conftest: loads the project's pytest plugin (options, markers, fixtures).

The plugin lives in the package, so the suite and the library share one implementation; it
holds no test logic of its own.
"""

pytest_plugins = ("bark_ablation.pytest_plugin",)
