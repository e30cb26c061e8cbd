from tests.integration.conftest import broker, broker_process  # noqa: F401
