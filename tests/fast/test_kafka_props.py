import argparse

import pytest

from jobs import kafka_props


def _args(argv):
    p = argparse.ArgumentParser()
    kafka_props.add_args(p)
    return p.parse_args(argv)


def test_file_then_property_wins(tmp_path):
    f = tmp_path / "client.properties"
    f.write_text("# comment\nsecurity.protocol=SASL_PLAINTEXT\nsasl.mechanism : PLAIN\n"
                 'sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required \\\n'
                 '  username="alice" password="s3cr=t";\n')
    props = kafka_props.from_args(_args(["--kafka-config", str(f), "--kafka-property", "sasl.mechanism=SCRAM-SHA-256"]))
    assert props["security.protocol"] == "SASL_PLAINTEXT"
    assert props["sasl.mechanism"] == "SCRAM-SHA-256"
    kw = kafka_props.kafka_python_kwargs(props)
    assert kw["sasl_plain_username"] == "alice" and kw["sasl_plain_password"] == "s3cr=t"
    assert kw["security_protocol"] == "SASL_PLAINTEXT"
    assert "s3cr=t" not in str(kafka_props.redacted(props))
    assert kafka_props.table_options(props)["properties.security.protocol"] == "SASL_PLAINTEXT"


def test_bad_property_is_one_clear_error():
    with pytest.raises(kafka_props.KafkaPropsError, match="KEY=VALUE"):
        kafka_props.from_args(_args(["--kafka-property", "novalue"]))
