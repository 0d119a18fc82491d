"""Shared pytest set-up: the ``slow`` marker (tests that run a real script
or train for more than a few steps; deselect with ``-m "not slow"``)."""


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: runs a real script or trains for more than a few steps "
                   "(deselect with -m 'not slow')")
