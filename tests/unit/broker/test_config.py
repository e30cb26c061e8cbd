import pytest

from strom.broker.config import BrokerConfig
from strom.storage import InvalidConfigError


def test_sources_in_order(tmp_path):
    toml = tmp_path / "strom.toml"
    toml.write_text('port = 9500\nadvertised_host = "broker.local"\n'
                    '"num.partitions" = 3\n[log]\n"retention.ms" = 1000\n')
    cfg = BrokerConfig.load(str(toml), env={"STROM_PORT": "9600", "STROM_LOG_SEGMENT_BYTES": "2048",
                                             "STROM_AUTO_CREATE_TOPICS_ENABLE": "false"},
                            data_dir="/tmp/x")
    assert cfg.port == 9600  # env beats the file
    assert cfg.advertised == ("broker.local", 9600)
    assert cfg.num_partitions == 3 and cfg.auto_create_topics_enable is False
    assert cfg.topic_defaults == {"retention.ms": "1000", "segment.bytes": "2048"}
    assert cfg.data_dir == "/tmp/x"
    assert BrokerConfig.load(None, env={}, port=7000).port == 7000


def test_bad_values_are_refused():
    with pytest.raises(InvalidConfigError, match="port"):
        BrokerConfig.load(None, env={"STROM_PORT": "many"})
    with pytest.raises(InvalidConfigError, match="unknown broker config"):
        BrokerConfig.load(None, env={"STROM_NO_SUCH_THING": "1"})


def test_transaction_configs_and_the_crash_point_variable():
    config = BrokerConfig.load(env={
        "STROM_TRANSACTION_MAX_TIMEOUT_MS": "1000",
        "STROM_CRASH_AT": "txn.after_prepare",  # read by strom.crashpoints, not a config
    }, **{"transaction.abort.timed.out.transaction.cleanup.interval.ms": 50})
    assert config.transaction_max_timeout_ms == 1000
    assert config.transaction_abort_timed_out_transaction_cleanup_interval_ms == 50
    assert config.transactional_id_expiration_ms == 7 * 24 * 3600 * 1000
    assert config.transaction_remove_expired_transaction_cleanup_interval_ms == 3_600_000
