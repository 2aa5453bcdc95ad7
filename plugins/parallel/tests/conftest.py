pytest_plugins = ["optreg.testing.plugin"]
