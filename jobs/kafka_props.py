"""Kafka client settings (security) shared by every job's Kafka source and sinks, and by produce.

--kafka-config FILE holds Java-style properties with Kafka's own key names (security.protocol,
sasl.mechanism, sasl.jaas.config, ssl.truststore.location, ...); repeated --kafka-property key=value
wins over the file. Values may be secrets: never print or log the dict, use redacted() for display.
"""
import re
from typing import Dict

# Keys whose values are secrets (Kafka's own list of password-typed configs, plus the jaas config).
SECRET_KEYS = ("sasl.jaas.config", "ssl.key.password", "ssl.keystore.password", "ssl.truststore.password",
               "ssl.keystore.key", "ssl.keystore.certificate.chain", "ssl.truststore.certificates")


class KafkaPropsError(ValueError):
    pass


def add_args(parser) -> None:
    g = parser.add_argument_group("kafka client settings")
    g.add_argument("--kafka-config", default=None, metavar="FILE",
                   help="Java-style properties file with Kafka client keys (security.protocol, sasl.*, ssl.*)")
    g.add_argument("--kafka-property", action="append", default=[], metavar="KEY=VALUE",
                   help="one Kafka client setting; repeatable; wins over --kafka-config")


def parse_properties(text: str) -> Dict[str, str]:
    """Java .properties subset: '#'/'!' comments, key=value or key:value, backslash line continuation."""
    props, pending = {}, ""
    for raw in text.splitlines():
        line = pending + raw.strip() if pending else raw.strip()
        pending = ""
        if not line or line[0] in "#!":
            continue
        if line.endswith("\\") and not line.endswith("\\\\"):
            pending = line[:-1]
            continue
        m = re.match(r"([^=:\s]+)\s*[=:\s]\s*(.*)$", line)
        if not m:
            raise KafkaPropsError(f"kafka config: cannot parse a line starting {line[:20]!r}")
        props[m.group(1)] = m.group(2)
    if pending:
        raise KafkaPropsError("kafka config: file ends inside a continued line")
    return props


def from_args(args) -> Dict[str, str]:
    props: Dict[str, str] = {}
    path = getattr(args, "kafka_config", None)
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                props.update(parse_properties(f.read()))
        except OSError as e:
            raise KafkaPropsError(f"--kafka-config {path}: {e.strerror}") from None
    for item in getattr(args, "kafka_property", None) or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise KafkaPropsError(f"--kafka-property expects KEY=VALUE, got {key.strip()[:40]!r}")
        props[key.strip()] = value.strip()
    register_secrets(props)
    return props


def is_secret(key: str) -> bool:
    """Kafka's password-typed keys, plus anything Flink's own masking would call sensitive."""
    k = key.lower()
    return k in SECRET_KEYS or any(w in k for w in ("password", "secret", "jaas", "token", "credential"))


def redacted(props: Dict[str, str]) -> Dict[str, str]:
    return {k: ("[hidden]" if is_secret(k) else v) for k, v in props.items()}


# Secret values of this process's settings (from_args registers them): every line the CLI prints
# about a failure goes through scrub(), so a Java/Flink message that quotes an option cannot show one.
_SECRETS: set = set()


def register_secrets(props: Dict[str, str]) -> None:
    for k, v in props.items():
        if is_secret(k) and v:
            _SECRETS.add(v)
            # the jaas config's quoted values (a password) can be quoted on their own in a message
            _SECRETS.update(val for name, val in _JAAS_OPT.findall(v) if val and is_secret(name))


def scrub(text: str) -> str:
    """``text`` with every registered secret value (also SQL-escaped) replaced by [hidden]."""
    for secret in sorted(_SECRETS, key=len, reverse=True):
        for form in (secret, secret.replace("'", "''")):
            text = text.replace(form, "[hidden]")
    return text


_JAAS_OPT = re.compile(r'(\w+)\s*=\s*"((?:[^"\\]|\\.)*)"')


def kafka_python_kwargs(props: Dict[str, str]) -> Dict[str, object]:
    """The common security keys mapped to kafka-python's arguments (for pre-flight checks and produce)."""
    out: Dict[str, object] = {}
    simple = {"security.protocol": "security_protocol", "sasl.mechanism": "sasl_mechanism",
              "ssl.truststore.location": "ssl_cafile", "ssl.ca.location": "ssl_cafile",
              "ssl.certificate.location": "ssl_certfile", "ssl.key.location": "ssl_keyfile",
              "ssl.key.password": "ssl_password",
              "sasl.kerberos.service.name": "sasl_kerberos_service_name"}
    for key, kw in simple.items():
        if key in props:
            out[kw] = props[key]
    if props.get("ssl.endpoint.identification.algorithm", None) == "":
        out["ssl_check_hostname"] = False
    jaas = props.get("sasl.jaas.config")
    if jaas:
        opts = {k: v.replace('\\"', '"') for k, v in _JAAS_OPT.findall(jaas)}
        if "username" in opts:
            out["sasl_plain_username"] = opts["username"]
        if "password" in opts:
            out["sasl_plain_password"] = opts["password"]
    return out


def table_options(props: Dict[str, str]) -> Dict[str, str]:
    """'properties.<key>' options for Flink's Kafka connector (source and sinks)."""
    return {f"properties.{k}": v for k, v in props.items()}
