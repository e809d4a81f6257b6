"""Every Kafka client the project makes, built in one place from the settings.

Managed Kafka services require TLS and SASL, and a broker with ACLs is the only thing that
keeps a stranger from publishing action requests or approvals. A client built anywhere else
would be the one that connects without them, so workers, the gateway, the producer library,
the command and the benchmarks all get their clients here (a unit test checks that nothing
else calls aiokafka's constructors): :class:`KafkaAccess` says where the brokers are and how to
authenticate, and makes producers, consumers and admin clients; :meth:`KafkaSecurity.faust_credentials`
says the same to Faust.

OAUTHBEARER is not offered: aiokafka takes it as code (an ``AbstractTokenProvider`` that fetches
and refreshes tokens from an identity provider), and which provider and flow that is cannot be
said in one setting; a deployment that needs it can subclass :class:`KafkaSecurity`.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.helpers import create_ssl_context

from pipeline.config import Settings

if TYPE_CHECKING:
    from faust.types.auth import CredentialsT

TLS_PROTOCOLS = ("SSL", "SASL_SSL")
SASL_PROTOCOLS = ("SASL_PLAINTEXT", "SASL_SSL")


@dataclass(frozen=True)
class KafkaSecurity:
    """How a client authenticates to the brokers: ``AIOPS_KAFKA_SECURITY_PROTOCOL`` and its companions."""

    protocol: str = "PLAINTEXT"
    mechanism: str = "SCRAM-SHA-512"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    cafile: str | None = None
    certfile: str | None = None
    keyfile: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> KafkaSecurity:
        password = settings.kafka_sasl_password
        return cls(
            protocol=settings.kafka_security_protocol,
            mechanism=settings.kafka_sasl_mechanism,
            username=settings.kafka_sasl_username,
            password=password.get_secret_value() if password is not None else None,
            cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None,
            certfile=str(settings.kafka_ssl_certfile) if settings.kafka_ssl_certfile else None,
            keyfile=str(settings.kafka_ssl_keyfile) if settings.kafka_ssl_keyfile else None,
        )

    @property
    def tls(self) -> bool:
        return self.protocol in TLS_PROTOCOLS

    @property
    def sasl(self) -> bool:
        return self.protocol in SASL_PROTOCOLS

    def ssl_context(self) -> ssl.SSLContext | None:
        """A fresh context per client: it verifies the broker's certificate and host name against
        ``cafile`` (the system's CAs when unset), and presents a client certificate when one is given."""
        if not self.tls:
            return None
        return create_ssl_context(cafile=self.cafile, certfile=self.certfile, keyfile=self.keyfile)

    def client_options(self) -> dict[str, Any]:
        """The keyword arguments aiokafka's producer, consumer and admin client take for this security."""
        options: dict[str, Any] = {"security_protocol": self.protocol}
        if self.tls:
            options["ssl_context"] = self.ssl_context()
        if self.sasl:
            options |= {
                "sasl_mechanism": self.mechanism,
                "sasl_plain_username": self.username,
                "sasl_plain_password": self.password,
            }
        return options

    def faust_credentials(self) -> CredentialsT | None:
        """The same for Faust's ``broker_credentials``: it hands them to every aiokafka client it
        makes (consumer, producer, topic creation). None is Faust's plaintext default."""
        import faust  # only workers need Faust; the gateway and the producer library do not pay for it

        if self.sasl:
            return faust.SASLCredentials(
                username=self.username, password=self.password, ssl_context=self.ssl_context(), mechanism=self.mechanism
            )
        if self.tls:
            return faust.SSLCredentials(self.ssl_context())
        return None


@dataclass(frozen=True)
class KafkaAccess:
    """Where the brokers are and how to reach them; makes every aiokafka client the project uses."""

    bootstrap: str
    security: KafkaSecurity = KafkaSecurity()

    @classmethod
    def from_settings(cls, settings: Settings) -> KafkaAccess:
        return cls(settings.kafka_bootstrap, KafkaSecurity.from_settings(settings))

    def producer(self, **options: Any) -> AIOKafkaProducer:
        return AIOKafkaProducer(bootstrap_servers=self.bootstrap, **self.security.client_options(), **options)

    def consumer(self, *topics: str, **options: Any) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(*topics, bootstrap_servers=self.bootstrap, **self.security.client_options(), **options)

    def admin(self, **options: Any) -> AIOKafkaAdminClient:
        return AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, **self.security.client_options(), **options)


def kafka_access(settings: Settings) -> KafkaAccess:
    return KafkaAccess.from_settings(settings)
