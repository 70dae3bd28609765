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


def test_secret_values_are_scrubbed_from_messages_also_sql_escaped():
    props = kafka_props.parse_properties(
        "security.protocol=SASL_SSL\n"
        'sasl.jaas.config=x.PlainLoginModule required username="bob" password="pa\'ss-9f2";\n'
        "ssl.keystore.key=PEM-KEY-77\nsasl.oauthbearer.client.credentials.client.secret=oa-55\n")
    kafka_props.register_secrets(props)
    # what Flink's "Table options are:" lists: the whole jaas value, SQL-escaped, and a bare PEM key
    msg = ("'properties.sasl.jaas.config'='" + props["sasl.jaas.config"].replace("'", "''") + "' "
           "'properties.ssl.keystore.key'='PEM-KEY-77' password pa'ss-9f2 oa-55 user bob")
    clean = kafka_props.scrub(msg)
    for secret in ("pa'ss-9f2", "pa''ss-9f2", "PEM-KEY-77", "oa-55"):
        assert secret not in clean
    assert "user bob" in clean and "properties.ssl.keystore.key" in clean  # only values go
    assert set(kafka_props.redacted(props).values()) == {"SASL_SSL", "[hidden]"}


def test_table_option_values_are_sql_escaped():
    from jobs.io import _with

    assert _with({"properties.ssl.truststore.password": "it's"}) == \
        "'properties.ssl.truststore.password' = 'it''s'"


def test_cancel_refuses_a_malformed_job_id_and_a_bad_address():
    from streamscore.cancel import cancel

    with pytest.raises(ValueError, match="32 hex digits"):
        cancel("127.0.0.1:8081", "not-a-job")
    with pytest.raises(ValueError, match="HOST:PORT"):
        cancel("localhost", "0" * 32)


def test_the_resume_command_printed_on_ctrl_c_hides_a_secret_property(tmp_path):
    from types import SimpleNamespace

    from jobs.run import RunPlan, interrupted_line

    job = "ab" * 16
    (tmp_path / job / "chk-3").mkdir(parents=True)
    (tmp_path / job / "chk-3" / "_metadata").write_bytes(b"x")
    argv = ["run", "fraud", "--kafka-property",
            'sasl.jaas.config=x.PlainLoginModule required username="u" password="ctrl-c-9s";']
    kafka_props.from_args(_args(argv[2:]))  # what `run` does first: registers the secret
    plan = RunPlan(env=None, settings=SimpleNamespace(checkpoint_dir=str(tmp_path)), detached=False, argv=argv)
    line = interrupted_line(plan, job)
    assert "chk-3" in line and "--from-savepoint" in line
    assert "ctrl-c-9s" not in line and "[hidden]" in line
