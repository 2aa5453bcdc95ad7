# Opt into optreg's conformance kit: it parametrizes the inherited checks over each class's cases.
pytest_plugins = ["optreg.testing.plugin"]
