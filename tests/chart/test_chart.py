"""The Helm chart, as `helm` renders it: lint, Kubernetes' own schemas, and the switches users
rely on. Run by scripts/chart.sh (which `make test` calls) with the project's virtualenv; needs
helm from scripts/go-tools.sh in AGORA_HELM."""

import base64
import copy
import functools
import ipaddress
import os
import pathlib
import subprocess

import kubernetes_validate
import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "agora"
HELM = os.environ.get("AGORA_HELM", "helm")
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest schemas.
KUBE_VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]
ROLES = ["gateway", "user-service", "product-service", "order-service", "payment-service"]
DEV = ["postgresql", "kafka", "consul", "jaeger"]


def render(*args, release="t"):
    """The objects `helm template` renders with these arguments (a fresh copy: tests may change
    it); each set of arguments is rendered once per run, as many tests ask for the same."""
    rendered = _render(tuple(args), release)
    if isinstance(rendered, RenderError):
        raise RenderError(*rendered.args)
    return copy.deepcopy(rendered)


@functools.lru_cache(maxsize=None)
def _render(args, release):
    out = subprocess.run(
        [HELM, "template", release, str(CHART), "--namespace", "shop", *args],
        capture_output=True, text=True, check=False,
    )
    if out.returncode != 0:
        return RenderError(out.stderr)
    return [d for d in yaml.safe_load_all(out.stdout) if d]


class RenderError(Exception):
    pass


def find(objects, kind, name):
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind} {name}: {len(found)} found among {[(o['kind'], o['metadata']['name']) for o in objects]}"
    return found[0]


def named(objects, kind):
    return {o["metadata"]["name"] for o in objects if o["kind"] == kind}


def container(deployment):
    return deployment["spec"]["template"]["spec"]["containers"][0]


def env(deployment):
    return {e["name"]: e for e in container(deployment).get("env", [])}


CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))


def test_lint_is_strict_clean_for_the_defaults_and_every_ci_values_file():
    for values in [None, *CI_VALUES]:
        args = ["-f", str(values)] if values else []
        out = subprocess.run([HELM, "lint", "--strict", str(CHART), *args], capture_output=True, text=True)
        assert out.returncode == 0, f"{values}: {out.stdout}{out.stderr}"


@pytest.mark.parametrize("values", [None, *CI_VALUES], ids=lambda v: v.name if v else "defaults")
def test_every_rendered_object_is_valid_kubernetes(values):
    objects = render(*(["-f", str(values)] if values else []))
    assert objects
    for version in KUBE_VERSIONS:
        for obj in objects:
            # strict: unknown fields are errors, not ignored.
            kubernetes_validate.validate(obj, version, strict=True)


def test_defaults_run_every_role_hardened_and_probed_with_dev_components():
    objects = render()
    for role in ROLES:
        name = f"t-agora-{role}"
        for kind in ["Deployment", "Service", "ServiceAccount", "ConfigMap", "PodDisruptionBudget", "NetworkPolicy"]:
            find(objects, kind, name)
        deployment = find(objects, "Deployment", name)
        pod = deployment["spec"]["template"]["spec"]
        c = container(deployment)
        assert c["args"] == [role]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
        assert c["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert c["resources"]["limits"]["memory"] and c["resources"]["requests"]["memory"]
        # preStop sleep + the 10 s drain fit in the grace period.
        assert c["lifecycle"]["preStop"]["sleep"]["seconds"] + 10 < pod["terminationGracePeriodSeconds"]
        if role == "gateway":
            assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
            assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
        else:
            short = role.removesuffix("-service")
            assert c["readinessProbe"]["grpc"] == {"port": c["ports"][0]["containerPort"],
                                                   "service": f"agora.{short}.v1.{short.title()}Service"}
            assert "grpc" in c["livenessProbe"]
        assert deployment["spec"]["replicas"] == 2
    assert not named(objects, "HorizontalPodAutoscaler"), "autoscaling needs metrics-server: off by default"
    for component in DEV:
        assert f"t-agora-{component}" in named(objects, "Service")
    # Default deny covers every pod of the release.
    deny = find(objects, "NetworkPolicy", "t-agora-default-deny")
    assert deny["spec"]["policyTypes"] == ["Ingress", "Egress"] and "ingress" not in deny["spec"]
    assert deny["spec"]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "agora", "app.kubernetes.io/instance": "t"}
    secret = find(objects, "Secret", "t-agora")
    assert set(secret["data"]) == {"jwt-secret", "admin-password", "postgres-password"}
    assert all(len(base64.b64decode(v)) >= 32 for v in secret["data"].values())


def peers(rule):
    return [p.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component") for p in rule.get("from", rule.get("to", []))]


def test_network_policies_allow_only_the_platforms_edges():
    objects = render()
    policy = lambda role: find(objects, "NetworkPolicy", f"t-agora-{role}")["spec"]
    # Who may call each service's gRPC port.
    grpc_callers = {
        "user-service": ["gateway", "order-service"], "product-service": ["gateway", "order-service"],
        "order-service": ["gateway"], "payment-service": ["gateway"],
    }
    for role, callers in grpc_callers.items():
        rules = policy(role)["ingress"]
        assert peers(rules[0]) == callers, role
        assert peers(rules[-1]) == ["consul"], "Consul's health checks"
    # Whom each role may call.
    egress = {role: [p for rule in policy(role)["egress"] for p in peers(rule)] for role in ROLES}
    assert egress["gateway"] == ["user-service", "product-service", "order-service", "payment-service", "consul", "jaeger"]
    assert egress["order-service"] == ["user-service", "product-service", "consul", "jaeger", "postgresql", "kafka"]
    assert egress["payment-service"] == ["consul", "jaeger", "postgresql", "kafka"]
    postgres = find(objects, "NetworkPolicy", "t-agora-postgresql")["spec"]
    assert peers(postgres["ingress"][0]) == ["user-service", "product-service", "order-service", "payment-service"]
    assert postgres["egress"] == []


def test_external_infrastructure_replaces_the_dev_components():
    objects = render("-f", str(CHART / "ci" / "external-values.yaml"))
    for component in DEV:
        assert not any(o["metadata"]["name"] == f"t-agora-{component}" for o in objects), component
    config = find(objects, "ConfigMap", "t-agora-order-service")["data"]
    assert config["AGORA_KAFKA_BROKERS"] == "kafka-0.kafka.data:9092,kafka-1.kafka.data:9092,kafka-2.kafka.data:9092"
    assert config["AGORA_KAFKA_REPLICATION"] == "3", "topics replicated on the external cluster"
    assert config["AGORA_CONSUL_ADDR"] == "consul-server.consul:8500"
    assert config["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector.observability:4317"
    order = env(find(objects, "Deployment", "t-agora-order-service"))
    assert order["AGORA_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "orders-db", "key": "url"}
    user = env(find(objects, "Deployment", "t-agora-user-service"))
    assert user["AGORA_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "t-agora", "key": "user-service-database-url"}
    assert user["AGORA_CONSUL_TOKEN"]["valueFrom"]["secretKeyRef"]["key"] == "consul-token"
    secret = find(objects, "Secret", "t-agora")["data"]
    assert base64.b64decode(secret["user-service-database-url"]).decode() == "postgres://agora:secret@pg.data:5432/agora_user"
    assert "order-service-database-url" not in secret and "postgres-password" not in secret
    # Egress opens the external ports, to any address.
    rules = find(objects, "NetworkPolicy", "t-agora-order-service")["spec"]["egress"]
    ports = sorted({p["port"] for r in rules if r["to"][0].get("ipBlock") for p in r["ports"]})
    assert ports == [4317, 5432, 8500, 9092]


# What the secured external-infrastructure values add to a role: none of it by default.
TLS_ENV = {"AGORA_KAFKA_SECURITY", "AGORA_KAFKA_SASL_MECHANISM", "AGORA_KAFKA_SASL_USERNAME", "AGORA_KAFKA_SASL_PASSWORD",
           "AGORA_KAFKA_TLS_CA", "AGORA_KAFKA_TLS_CERT", "AGORA_KAFKA_TLS_KEY", "OTEL_EXPORTER_OTLP_CERTIFICATE",
           "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "OTEL_EXPORTER_OTLP_CLIENT_KEY"}


def role_env_names(objects, role):
    """Every variable a role's container gets: its ConfigMap's and its env's."""
    return set(find(objects, "ConfigMap", f"t-agora-{role}")["data"]) | set(env(find(objects, "Deployment", f"t-agora-{role}")))


def tls_volumes(objects, role):
    """The role's Secret volumes, as {volume name: (mountPath, readOnly, secretName, {key: file})}."""
    deployment = find(objects, "Deployment", f"t-agora-{role}")
    mounts = {m["name"]: m for m in container(deployment)["volumeMounts"]}
    found = {}
    for volume in deployment["spec"]["template"]["spec"]["volumes"]:
        if "secret" in volume:
            mount = mounts[volume["name"]]
            found[volume["name"]] = (mount["mountPath"], mount.get("readOnly"), volume["secret"]["secretName"],
                                     {i["key"]: i["path"] for i in volume["secret"]["items"]})
    return found


def secret_url(objects, role):
    return base64.b64decode(find(objects, "Secret", "t-agora")["data"][f"{role}-database-url"]).decode()


@pytest.mark.parametrize("values", [None, "external-values.yaml", "existing-secret-values.yaml"], ids=lambda v: v or "defaults")
def test_without_the_tls_values_nothing_of_them_is_rendered(values):
    objects = render(*(["-f", str(CHART / "ci" / values)] if values else []))
    for role in ROLES:
        assert not role_env_names(objects, role) & TLS_ENV, role
        volumes = find(objects, "Deployment", f"t-agora-{role}")["spec"]["template"]["spec"]["volumes"]
        assert volumes == [{"name": "tmp", "emptyDir": {"sizeLimit": "16Mi"}}], role
        assert [m["name"] for m in container(find(objects, "Deployment", f"t-agora-{role}"))["volumeMounts"]] == ["tmp"]
    if values == "external-values.yaml":
        assert secret_url(objects, "user-service") == "postgres://agora:secret@pg.data:5432/agora_user", "the URL as given"


def test_external_infrastructure_over_tls():
    objects = render("-f", str(CHART / "ci" / "external-tls-values.yaml"))
    services = [r for r in ROLES if r != "gateway"]
    otlp = ("/etc/agora/otlp", True, "otel-agora-tls", {"ca.crt": "ca.crt", "tls.crt": "tls.crt", "tls.key": "tls.key"})
    for role in ROLES:
        config = find(objects, "ConfigMap", f"t-agora-{role}")["data"]
        e = env(find(objects, "Deployment", f"t-agora-{role}"))
        volumes = tls_volumes(objects, role)
        # OTLP over TLS for every role: the collector's CA and a client certificate.
        assert config["OTEL_EXPORTER_OTLP_ENDPOINT"] == "https://otel-collector.observability:4317"
        assert config["OTEL_EXPORTER_OTLP_CERTIFICATE"] == "/etc/agora/otlp/ca.crt"
        assert config["OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE"] == "/etc/agora/otlp/tls.crt"
        assert config["OTEL_EXPORTER_OTLP_CLIENT_KEY"] == "/etc/agora/otlp/tls.key"
        assert volumes["otlp-tls"] == otlp, role
        # The Consul token from the Secret named, never in a ConfigMap.
        assert e["AGORA_CONSUL_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "consul-agora", "key": "token"}
        assert not any("CONSUL_TOKEN" in k for k in config)
        if role == "gateway":
            # No Kafka, no database.
            assert not {k for k in role_env_names(objects, role) if k.startswith("AGORA_KAFKA")}
            assert set(volumes) == {"otlp-tls"}
            continue
        # Kafka: SASL_SSL, SCRAM, a client certificate; the password from its Secret.
        assert {k: v for k, v in config.items() if k.startswith("AGORA_KAFKA_") and k not in
                ("AGORA_KAFKA_BROKERS", "AGORA_KAFKA_PARTITIONS", "AGORA_KAFKA_REPLICATION")} == {
            "AGORA_KAFKA_SECURITY": "sasl-ssl", "AGORA_KAFKA_SASL_MECHANISM": "scram-sha-512",
            "AGORA_KAFKA_SASL_USERNAME": "agora", "AGORA_KAFKA_TLS_CA": "/etc/agora/kafka/ca.crt",
            "AGORA_KAFKA_TLS_CERT": "/etc/agora/kafka/tls.crt", "AGORA_KAFKA_TLS_KEY": "/etc/agora/kafka/tls.key"}
        assert e["AGORA_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "kafka-agora", "key": "password"}
        assert volumes["kafka-tls"] == ("/etc/agora/kafka", True, "kafka-agora-tls",
                                        {"ca.crt": "ca.crt", "tls.crt": "tls.crt", "tls.key": "tls.key"})
        # PostgreSQL: the CA mounted for every service (order-service's URL, in its own Secret,
        # names it itself).
        assert volumes["postgresql-tls"] == ("/etc/agora/postgresql", True, "pg-ca", {"ca.crt": "ca.crt"})
        assert set(volumes) == {"otlp-tls", "kafka-tls", "postgresql-tls"}
        # Secret volumes are 0440: the role reads them through its group (fsGroup 65532).
        spec = find(objects, "Deployment", f"t-agora-{role}")["spec"]["template"]["spec"]
        assert {v["secret"]["defaultMode"] for v in spec["volumes"] if "secret" in v} == {0o440}
        assert spec["securityContext"]["fsGroup"] == 65532
    # The URLs the chart stores get sslmode and the CA, after their own parameters.
    tls = "sslmode=verify-full&sslrootcert=/etc/agora/postgresql/ca.crt"
    assert secret_url(objects, "user-service") == (
        "postgres://agora:secret@pg-0.data:5432,pg-1.data:5432/agora_user?target_session_attrs=read-write&" + tls)
    assert secret_url(objects, "product-service") == "postgres://agora:secret@pg.data:5432/agora_product?" + tls
    assert env(find(objects, "Deployment", "t-agora-order-service"))["AGORA_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "orders-db", "key": "url"}
    secret = find(objects, "Secret", "t-agora")["data"]
    assert "consul-token" not in secret and "kafka-sasl-password" not in secret and "order-service-database-url" not in secret
    # The ports stay the ones the endpoints name.
    assert egress_ports_to_anywhere(objects, "order-service") == [4317, 5432, 8500, 9093]


def test_each_tls_setting_alone():
    external_kafka = ["--set", "kafka.enabled=false", "--set", "externalKafka.brokers=kafka.data:9093"]
    # Kafka over TLS only (no SASL), checking the brokers against the system's CAs.
    objects = render(*external_kafka, "--set", "externalKafka.security=ssl")
    config = find(objects, "ConfigMap", "t-agora-payment-service")["data"]
    assert config["AGORA_KAFKA_SECURITY"] == "ssl" and not {"AGORA_KAFKA_SASL_USERNAME", "AGORA_KAFKA_TLS_CA"} & set(config)
    assert "AGORA_KAFKA_SASL_PASSWORD" not in env(find(objects, "Deployment", "t-agora-payment-service"))
    assert not tls_volumes(objects, "payment-service")
    # ... or against a CA of a Secret, without a client certificate.
    objects = render(*external_kafka, "--set", "externalKafka.security=ssl", "--set", "externalKafka.tls.existingSecret=kafka-ca",
                     "--set", "externalKafka.tls.caKey=root.pem")
    config = find(objects, "ConfigMap", "t-agora-payment-service")["data"]
    assert config["AGORA_KAFKA_TLS_CA"] == "/etc/agora/kafka/ca.crt" and "AGORA_KAFKA_TLS_CERT" not in config
    assert tls_volumes(objects, "payment-service") == {"kafka-tls": ("/etc/agora/kafka", True, "kafka-ca", {"root.pem": "ca.crt"})}
    assert not tls_volumes(objects, "gateway")
    # SASL with the password given as a value: kept in the chart's Secret; SCRAM-SHA-256.
    sasl = [*external_kafka, "--set", "externalKafka.security=sasl-ssl", "--set", "externalKafka.sasl.username=agora",
            "--set", "externalKafka.sasl.mechanism=scram-sha-256"]
    objects = render(*sasl, "--set", "externalKafka.sasl.password=kafka-password")
    assert find(objects, "ConfigMap", "t-agora-order-service")["data"]["AGORA_KAFKA_SASL_MECHANISM"] == "scram-sha-256"
    ref = env(find(objects, "Deployment", "t-agora-order-service"))["AGORA_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "t-agora", "key": "kafka-sasl-password"}
    assert base64.b64decode(find(objects, "Secret", "t-agora")["data"]["kafka-sasl-password"]).decode() == "kafka-password"
    assert "AGORA_KAFKA_SASL_PASSWORD" not in env(find(objects, "Deployment", "t-agora-gateway"))
    # ... or read from the top-level existingSecret.
    objects = render(*sasl, "--set", "existingSecret=agora-secrets")
    ref = env(find(objects, "Deployment", "t-agora-order-service"))["AGORA_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "agora-secrets", "key": "kafka-sasl-password"}
    # The in-chart Kafka is plaintext: externalKafka's security applies to external brokers only.
    objects = render("--set", "externalKafka.security=ssl")
    assert "AGORA_KAFKA_SECURITY" not in find(objects, "ConfigMap", "t-agora-order-service")["data"]

    # PostgreSQL with a client certificate; sslmode alone; roles on the in-chart PostgreSQL untouched.
    pg_tls = ["--set", "externalPostgresql.sslmode=verify-ca", "--set", "externalPostgresql.tls.existingSecret=pg-tls",
              "--set", "externalPostgresql.tls.certKey=tls.crt", "--set", "externalPostgresql.tls.keyKey=tls.key",
              "--set", "roles.payment-service.database.url=postgres://pay:pw@pg.data:5432/pay"]
    objects = render(*pg_tls)
    assert secret_url(objects, "payment-service") == (
        "postgres://pay:pw@pg.data:5432/pay?sslmode=verify-ca&sslrootcert=/etc/agora/postgresql/ca.crt"
        "&sslcert=/etc/agora/postgresql/tls.crt&sslkey=/etc/agora/postgresql/tls.key")
    assert tls_volumes(objects, "payment-service") == {"postgresql-tls": (
        "/etc/agora/postgresql", True, "pg-tls", {"ca.crt": "ca.crt", "tls.crt": "tls.crt", "tls.key": "tls.key"})}
    for role in ["user-service", "product-service", "order-service", "gateway"]:
        assert not tls_volumes(objects, role), role
    assert "sslmode" not in env(find(objects, "Deployment", "t-agora-user-service"))["AGORA_DATABASE_URL"]["value"]
    objects = render("--set", "externalPostgresql.sslmode=require",
                     "--set", "roles.user-service.database.url=postgres://u:pw@pg:5432/users?application_name=agora")
    assert secret_url(objects, "user-service") == "postgres://u:pw@pg:5432/users?application_name=agora&sslmode=require"
    assert not tls_volumes(objects, "user-service")

    # OTLP: a CA only; a client certificate only (the public CAs).
    https = ["--set", "otlp.endpoint=https://otel.example.com:4317"]
    objects = render(*https, "--set", "otlp.tls.existingSecret=otel-ca")
    config = find(objects, "ConfigMap", "t-agora-gateway")["data"]
    assert config["OTEL_EXPORTER_OTLP_CERTIFICATE"] == "/etc/agora/otlp/ca.crt" and "OTEL_EXPORTER_OTLP_CLIENT_KEY" not in config
    objects = render(*https, "--set", "otlp.tls.existingSecret=otel-client", "--set", "otlp.tls.caKey=",
                     "--set", "otlp.tls.certKey=tls.crt", "--set", "otlp.tls.keyKey=tls.key")
    config = find(objects, "ConfigMap", "t-agora-order-service")["data"]
    assert "OTEL_EXPORTER_OTLP_CERTIFICATE" not in config and config["OTEL_EXPORTER_OTLP_CLIENT_KEY"] == "/etc/agora/otlp/tls.key"
    assert tls_volumes(objects, "order-service") == {"otlp-tls": (
        "/etc/agora/otlp", True, "otel-client", {"tls.crt": "tls.crt", "tls.key": "tls.key"})}

    # The Consul token as a value stays in the chart's Secret.
    objects = render("--set", "consul.enabled=false", "--set", "externalConsul.address=consul:8500",
                     "--set", "externalConsul.token=consul-token-1")
    assert env(find(objects, "Deployment", "t-agora-gateway"))["AGORA_CONSUL_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "t-agora"
    assert "consul-token-1" not in yaml.safe_dump(find(objects, "ConfigMap", "t-agora-gateway"))


def test_tls_settings_that_cannot_work_are_refused_with_the_reason():
    external_kafka = ["--set", "kafka.enabled=false", "--set", "externalKafka.brokers=kafka.data:9093"]
    cases = {
        (*external_kafka, "--set", "externalKafka.security=tls"): "/externalKafka/security",
        (*external_kafka, "--set", "externalKafka.sasl.mechanism=md5"): "/externalKafka/sasl/mechanism",
        ("--set", "externalPostgresql.sslmode=prefer"): "/externalPostgresql/sslmode",
        (*external_kafka, "--set", "externalKafka.sasl.username=agora"): "need externalKafka.security ssl or sasl-ssl",
        (*external_kafka, "--set", "externalKafka.tls.existingSecret=kafka-tls"): "need externalKafka.security ssl or sasl-ssl",
        (*external_kafka, "--set", "externalKafka.security=ssl", "--set", "externalKafka.sasl.username=agora"): "need externalKafka.security sasl-ssl",
        (*external_kafka, "--set", "externalKafka.security=sasl-ssl"): "needs externalKafka.sasl.username",
        (*external_kafka, "--set", "externalKafka.security=sasl-ssl", "--set", "externalKafka.sasl.username=agora"): "needs the password",
        (*external_kafka, "--set", "externalKafka.security=sasl-ssl", "--set", "externalKafka.sasl.username=agora",
         "--set", "externalKafka.sasl.password=p", "--set", "existingSecret=agora-secrets"): "would be dropped",
        (*external_kafka, "--set", "externalKafka.security=ssl", "--set", "externalKafka.tls.existingSecret=kafka-tls",
         "--set", "externalKafka.tls.certKey=tls.crt"): "set certKey and keyKey together",
        ("--set", "externalPostgresql.tls.existingSecret=pg-ca"): "needs externalPostgresql.sslmode",
        ("--set", "externalPostgresql.tls.existingSecret=pg-ca", "--set", "externalPostgresql.sslmode=disable"): "sslmode is disable",
        ("--set", "externalPostgresql.sslmode=require", "--set", "roles.user-service.database.url=postgres://u@pg/users?sslmode=disable"):
            "roles.user-service.database.url has sslmode= already",
        ("--set", "otlp.tls.existingSecret=otel-ca"): "otlp.tls needs an https:// otlp.endpoint",
        ("--set", "otlp.endpoint=http://otel:4317", "--set", "otlp.tls.existingSecret=otel-ca"): "otlp.tls needs an https:// otlp.endpoint",
        ("--set", "externalConsul.token=t", "--set", "externalConsul.existingSecret=consul"): "not both",
        ("--set", "externalConsul.existingSecret=Consul_Token"): "/externalConsul/existingSecret",
    }
    for args, reason in cases.items():
        with pytest.raises(RenderError, match=reason.replace("(", r"\(")):
            render(*args)


def test_a_changed_tls_setting_rolls_the_roles_that_read_it():
    base = ["--set", "jwtSecret=" + "j" * 40, "--set", "adminPassword=admin-password-1", "--set", "postgresql.password=pg1",
            "--set", "kafka.enabled=false", "--set", "externalKafka.brokers=kafka:9093", "--set", "externalKafka.security=sasl-ssl",
            "--set", "externalKafka.sasl.username=agora", "--set", "externalKafka.sasl.password=kafka-1",
            "--set", "roles.payment-service.database.url=postgres://a:b@pg:5432/pay"]
    before = checksums(*base)
    cases = {
        ("externalKafka.sasl.password=kafka-2",): {"user-service", "product-service", "order-service", "payment-service"},
        ("externalPostgresql.sslmode=require",): {"payment-service"},
    }
    for sets, rolled in cases.items():
        after = checksums(*base, *[a for s in sets for a in ("--set", s)])
        assert {role for role in ROLES if after[role] != before[role]} == rolled, sets


def test_consul_off_means_static_addresses_through_the_services():
    objects = render("-f", str(CHART / "ci" / "static-values.yaml"))
    assert "t-agora-consul" not in named(objects, "Deployment")
    gateway = find(objects, "ConfigMap", "t-agora-gateway")["data"]
    assert gateway["AGORA_DISCOVERY"] == "static" and "AGORA_CONSUL_ADDR" not in gateway
    assert gateway["AGORA_USER_ADDR"] == "t-agora-user-service:50051"
    assert gateway["AGORA_PAYMENT_ADDR"] == "t-agora-payment-service:50054"
    order = find(objects, "ConfigMap", "t-agora-order-service")["data"]
    assert order["AGORA_PRODUCT_ADDR"] == "t-agora-product-service:50052" and "AGORA_ORDER_ADDR" not in order
    assert "AGORA_ADVERTISE_ADDR" not in env(find(objects, "Deployment", "t-agora-order-service"))
    # Consul itself must be named when discovery needs it.
    with pytest.raises(RenderError, match="set externalConsul.address"):
        render("--set", "consul.enabled=false")


def test_fixed_replicas_replace_the_autoscaler():
    objects = render("-f", str(CHART / "ci" / "replicas-values.yaml"))
    assert find(objects, "Deployment", "t-agora-gateway")["spec"]["replicas"] == 3
    assert find(objects, "Deployment", "t-agora-product-service")["spec"]["replicas"] == 4
    hpas = named(objects, "HorizontalPodAutoscaler")
    assert "t-agora-gateway" not in hpas and "t-agora-product-service" not in hpas
    assert "t-agora-order-service" in hpas


def test_ingress_routes_its_hosts_to_the_gateway_and_only_the_controller_gets_in():
    objects = render("-f", str(CHART / "ci" / "ingress-values.yaml"))
    ingress = find(objects, "Ingress", "t-agora-gateway")["spec"]
    assert ingress["ingressClassName"] == "nginx"
    assert ingress["tls"] == [{"secretName": "shop-tls", "hosts": ["shop.example.com"]}]
    backend = ingress["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert (ingress["rules"][0]["host"], backend["name"], backend["port"]["name"]) == ("shop.example.com", "t-agora-gateway", "http")
    rule = find(objects, "NetworkPolicy", "t-agora-gateway")["spec"]["ingress"][0]
    assert rule["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}]
    assert "Ingress" not in {o["kind"] for o in render()}, "off by default"


def test_bad_values_are_refused_with_the_reason():
    cases = {
        ("--set", "roles.gateway.replica=2"): "additional properties 'replica' not allowed",
        ("--set", "discovery=dns"): "value must be one of 'consul', 'static'",
        ("--set", "kafka.enabled=false"): "set externalKafka.brokers",
        ("--set", "externalKafka.brokers=kafka"): "/externalKafka/brokers",
        ("--set", "jwtSecret=short"): "/jwtSecret",
    }
    for args, reason in cases.items():
        with pytest.raises(RenderError, match=reason.replace("(", r"\(")):
            render(*args)


def test_k8s_manifests_are_the_chart_rendered_with_existing_secrets():
    rendered = subprocess.run(["bash", str(ROOT / "scripts" / "chart.sh"), "render"], capture_output=True, text=True)
    assert rendered.returncode == 0, rendered.stderr
    committed = (ROOT / "k8s" / "agora.yaml").read_text()
    assert rendered.stdout == committed, "k8s/ is stale: run `make k8s` and commit it"
    objects = [d for d in yaml.safe_load_all(committed) if d]
    assert "Secret" not in {o["kind"] for o in objects}, "k8s/ must carry no generated secret"


# NetworkPolicy semantics, enough to ask "may this connection happen?" of rendered policies. A
# party is a pod (its labels, its namespace's labels) or an address outside the cluster.
NAMESPACE = {"kubernetes.io/metadata.name": "shop"}
KUBE_DNS = ({"k8s-app": "kube-dns"}, {"kubernetes.io/metadata.name": "kube-system"})


def selects(selector, labels):
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for e in selector.get("matchExpressions", []):
        present, value = e["key"] in labels, labels.get(e["key"])
        ok = {"In": present and value in e.get("values", []), "NotIn": not present or value not in e.get("values", []),
              "Exists": present, "DoesNotExist": not present}[e["operator"]]
        if not ok:
            return False
    return True


def peer_matches(peer, party):
    if "ipBlock" in peer:
        if "ip" not in party:
            return False
        ip = ipaddress.ip_address(party["ip"])
        block = peer["ipBlock"]
        return (ip in ipaddress.ip_network(block["cidr"])
                and not any(ip in ipaddress.ip_network(c) for c in block.get("except", []) if ipaddress.ip_network(c).version == ip.version))
    if "ip" in party:
        return False
    namespace_ok = selects(peer["namespaceSelector"], party["ns"]) if "namespaceSelector" in peer else party["ns"] == NAMESPACE
    return namespace_ok and selects(peer.get("podSelector", {}), party["labels"])


def admits(policies, pod, direction, other, port):
    """Whether the policies selecting pod let it take (Ingress) or make (Egress) a connection to
    or from other on port (the port of the pod receiving it)."""
    selecting = [p["spec"] for p in policies if pod.get("ns") == NAMESPACE and "ip" not in pod
                 and selects(p["spec"]["podSelector"], pod["labels"]) and direction in p["spec"]["policyTypes"]]
    if not selecting:
        return True
    key, peers_key = direction.lower(), "from" if direction == "Ingress" else "to"
    return any(
        (not rule.get("ports") or any(pr.get("port") == port for pr in rule["ports"]))
        and (not rule.get(peers_key) or any(peer_matches(peer, other) for peer in rule[peers_key]))
        for spec in selecting for rule in spec.get(key) or []
    )


def connects(objects, source, destination, port):
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    return admits(policies, source, "Egress", destination, port) and admits(policies, destination, "Ingress", source, port)


def pod(labels):
    return {"labels": labels, "ns": NAMESPACE}


def role_pod(objects, role):
    return pod(find(objects, "Deployment", f"t-agora-{role}")["spec"]["template"]["metadata"]["labels"])


def egress_ports_to_anywhere(objects, role):
    rules = find(objects, "NetworkPolicy", f"t-agora-{role}")["spec"]["egress"]
    return sorted({p["port"] for r in rules if r["to"][0].get("ipBlock") for p in r["ports"]})


def test_egress_opens_the_ports_the_external_endpoints_name():
    external = ["-f", str(CHART / "ci" / "external-values.yaml"),
                "--set", r"externalKafka.brokers=10.240.0.1:19092\,other:29092\,again:29092",
                "--set", "otlp.endpoint=http://10.240.0.1:14317/",
                "--set", "externalConsul.address=10.240.0.1:18500"]
    objects = render(*external)
    assert egress_ports_to_anywhere(objects, "order-service") == [5432, 14317, 18500, 19092, 29092]
    assert egress_ports_to_anywhere(objects, "gateway") == [14317, 18500]
    # The Consul port may be given (a Service whose targetPort differs); an OTLP URL without a
    # port uses its scheme's.
    objects = render(*external, "--set", "externalConsul.port=8501", "--set", "otlp.endpoint=https://otel.example.com")
    assert egress_ports_to_anywhere(objects, "gateway") == [443, 8501]


@pytest.mark.parametrize("values", ["defaults", "ingress-values.yaml"])
def test_the_helm_test_pod_reaches_the_gateway_through_the_network_policies(values):
    objects = render(*(["-f", str(CHART / "ci" / values)] if values != "defaults" else []))
    test_pods = [o for o in objects if o["kind"] == "Pod" and o["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"]
    assert len(test_pods) == 1
    check = pod(test_pods[0]["metadata"]["labels"])
    gateway = role_pod(objects, "gateway")
    gateway_port = container(find(objects, "Deployment", "t-agora-gateway"))["ports"][0]["containerPort"]
    assert connects(objects, check, gateway, gateway_port)
    assert connects(objects, check, {"labels": KUBE_DNS[0], "ns": KUBE_DNS[1]}, 53)
    # ... and nothing else.
    assert not connects(objects, check, role_pod(objects, "user-service"), 50051)
    if values != "defaults":
        # gatewayFrom is set: others outside it still may not reach the gateway.
        assert not connects(objects, role_pod(objects, "payment-service"), gateway, gateway_port)


def test_external_consul_checks_open_the_roles_ports_only_to_consul_check_from():
    external_consul = ["--set", "consul.enabled=false", "--set", "externalConsul.address=10.240.0.1:8500"]
    consul_agent = {"ip": "10.240.0.1"}
    for extra in [[], ["--set", "networkPolicy.gatewayFrom[0].ipBlock.cidr=192.0.2.0/24"]]:
        objects = render(*external_consul, *extra)
        for role in ROLES:
            spec = find(objects, "NetworkPolicy", f"t-agora-{role}")["spec"]
            port = container(find(objects, "Deployment", f"t-agora-{role}"))["ports"][0]["containerPort"]
            rules = spec["ingress"]
            assert len(rules) == len({yaml.safe_dump(r, sort_keys=True) for r in rules}), f"{role}: a duplicate ingress rule"
            if role == "gateway":
                assert sum(1 for r in rules if "from" not in r) == (0 if extra else 1)
                continue
            # Only the callers, never anyone.
            assert all(r.get("from") for r in rules if any(p["port"] == port for p in r["ports"])), role
            assert not connects(objects, consul_agent, role_pod(objects, role), port), role
            if role != "payment-service":
                assert not connects(objects, role_pod(objects, "payment-service"), role_pod(objects, role), port), role
        objects = render(*external_consul, *extra, "--set", "networkPolicy.consulCheckFrom[0].ipBlock.cidr=10.240.0.1/32")
        for role in ROLES:
            port = container(find(objects, "Deployment", f"t-agora-{role}"))["ports"][0]["containerPort"]
            assert connects(objects, consul_agent, role_pod(objects, role), port), role
            assert not connects(objects, {"ip": "10.240.0.2"}, role_pod(objects, role), port) or (role == "gateway" and not extra)


def checksums(*args):
    return {role: find(render(*args), "Deployment", f"t-agora-{role}")["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
            for role in ROLES}


def test_a_changed_setting_rolls_exactly_the_roles_that_read_it():
    base = ["--set", "jwtSecret=" + "j" * 40, "--set", "adminPassword=admin-password-1",
            "--set", "postgresql.password=pg1", "--set", "roles.payment-service.database.url=postgres://a:b@pg:5432/pay"]
    before = checksums(*base)
    assert checksums(*base) == before, "the same values give the same checksums"
    cases = {
        ("roles.payment-service.database.url=postgres://a:c@pg:5432/pay",): {"payment-service"},
        ("jwtSecret=" + "k" * 40,): {"gateway", "user-service"},
        ("adminPassword=admin-password-2",): {"user-service"},
        ("postgresql.password=pg2",): {"user-service", "product-service", "order-service"},
        ("roles.gateway.rateLimitBurst=300",): {"gateway"},
        ("roles.order-service.extraEnv[0].name=X", "roles.order-service.extraEnv[0].value=1"): {"order-service"},
        ("logLevel=debug",): set(ROLES),
    }
    for sets, rolled in cases.items():
        after = checksums(*base, *[a for s in sets for a in ("--set", s)])
        assert {role for role in ROLES if after[role] != before[role]} == rolled, sets


def test_deployments_start_at_the_autoscalers_minimum():
    objects = render("-f", str(CHART / "ci" / "replicas-values.yaml"), "--set", "roles.user-service.autoscaling.enabled=true",
                     "--set", "roles.user-service.replicas=3")
    for role, replicas in {"order-service": 2, "user-service": 3}.items():
        hpa = find(objects, "HorizontalPodAutoscaler", f"t-agora-{role}")["spec"]
        assert hpa["minReplicas"] == replicas
        assert find(objects, "Deployment", f"t-agora-{role}")["spec"]["replicas"] == replicas, role


def test_the_generated_secret_outlives_the_release():
    secret = find(render(), "Secret", "t-agora")
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_k8s_manifests_hold_no_helm_hooks():
    objects = [d for d in yaml.safe_load_all((ROOT / "k8s" / "agora.yaml").read_text()) if d]
    hooks = [o["metadata"]["name"] for o in objects if "helm.sh/hook" in (o["metadata"].get("annotations") or {})]
    assert not hooks, f"kubectl apply would run {hooks} at once"


def test_the_gateway_node_port_can_be_set():
    def node_port(*args):
        return find(render(*args), "Service", "t-agora-gateway")["spec"]["ports"][0].get("nodePort")
    assert node_port("-f", str(CHART / "ci" / "nodeport-values.yaml")) == 30080
    assert node_port("--set", "service.type=LoadBalancer", "--set", "service.nodePort=31000") == 31000
    assert node_port("--set", "service.type=NodePort") is None, "Kubernetes chooses"
    assert node_port("--set", "service.nodePort=31000") is None, "ClusterIP has no node port"


def notes(*args):
    out = subprocess.run([HELM, "install", "t", str(CHART), "--namespace", "shop", "--dry-run=client", *args],
                         capture_output=True, text=True, check=True)
    return out.stdout.split("NOTES:", 1)[1]


def test_notes_say_how_to_reach_the_gateway_what_outlives_it_and_what_is_missing():
    assert "NODE_PORT=30080" in notes("-f", str(CHART / "ci" / "nodeport-values.yaml"))
    default = notes()
    assert "svc/t-agora-gateway $LOCAL_PORT:80" in default and "http://127.0.0.1:$LOCAL_PORT/v1/products" in default
    assert "secret/t-agora pvc/data-t-agora-postgresql-0 pvc/data-t-agora-kafka-0" in default
    assert "WARNING" not in default and "metrics-server" not in default
    external = notes("--set", "consul.enabled=false", "--set", "externalConsul.address=10.240.0.1:8500",
                     "--set", "roles.gateway.autoscaling.enabled=true")
    assert "WARNING: networkPolicy.consulCheckFrom is empty" in external and "metrics-server" in external
    assert "WARNING" not in notes("-f", str(CHART / "ci" / "external-values.yaml"))


def test_every_roles_spans_name_its_namespace_pod_and_node():
    objects = render()
    for role in ROLES:
        items = container(find(objects, "Deployment", f"t-agora-{role}"))["env"]
        names = [e["name"] for e in items]
        attributes = next(e["value"] for e in items if e["name"] == "OTEL_RESOURCE_ATTRIBUTES")
        assert "k8s.pod.name=$(POD_NAME)" in attributes and "k8s.node.name=$(NODE_NAME)" in attributes, attributes
        assert "deployment.environment.name=dev" in attributes, attributes
        # The namespace the pod runs in, not the one rendered for: k8s/agora.yaml is applied
        # with `kubectl -n ANY`.
        assert "service.namespace=$(POD_NAMESPACE),k8s.namespace.name=$(POD_NAMESPACE)" in attributes, attributes
        assert "shop" not in attributes, attributes
        namespace = next(e for e in items if e["name"] == "POD_NAMESPACE")
        assert namespace["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace", namespace
        # $(VAR) expands only variables defined before it.
        for var in ("POD_NAME", "NODE_NAME", "POD_NAMESPACE"):
            assert names.index(var) < names.index("OTEL_RESOURCE_ATTRIBUTES"), names
    # No OTLP endpoint: no trace export, and no resource attributes to carry.
    objects = render("--set", "jaeger.enabled=false")
    assert "OTEL_RESOURCE_ATTRIBUTES" not in env(find(objects, "Deployment", "t-agora-gateway"))


def test_default_images_are_the_ones_make_images_and_make_dev_images_build():
    objects = render()
    pinned = {}
    for line in (ROOT / "scripts" / "versions.env").read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            pinned[name] = value
    version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    assert container(find(objects, "Deployment", "t-agora-gateway"))["image"] == f"agora.local/agora:{version}"
    wanted = {
        "postgresql": ("StatefulSet", pinned["DEV_POSTGRESQL_VERSION"]),
        "kafka": ("StatefulSet", pinned["KAFKA_VERSION"]),
        "consul": ("Deployment", pinned["CONSUL_VERSION"]),
        "jaeger": ("Deployment", pinned["JAEGER_VERSION"]),
    }
    for component, (kind, tag) in wanted.items():
        image = container(find(objects, kind, f"t-agora-{component}"))["image"]
        built = subprocess.run(["bash", str(ROOT / "scripts" / "dev-images.sh"), "name", component],
                               capture_output=True, text=True, check=True).stdout.strip()
        assert image == built == f"agora.local/dev/{component}:{tag}", (image, built)


def test_mutual_tls_mounts_each_roles_secret_and_the_kubelet_and_consul_ask_the_health_port():
    assert not any(k.startswith("AGORA_TLS") for o in render() if o["kind"] == "ConfigMap" for k in o["data"]), \
        "mutual TLS is off by default where the cluster has no cert-manager"
    objects = render("--set", "mtls.enabled=true", "--set", "mtls.trustDomain=shop.example")
    for role in ROLES:
        deployment = find(objects, "Deployment", f"t-agora-{role}")
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        assert volumes["mtls"]["secret"]["secretName"] == f"t-agora-{role}-mtls"
        assert {i["key"] for i in volumes["mtls"]["secret"]["items"]} == {"tls.crt", "tls.key", "ca.crt"}
        mounts = {m["name"]: m for m in container(deployment)["volumeMounts"]}
        assert mounts["mtls"] == {"name": "mtls", "mountPath": "/etc/agora/mtls", "readOnly": True}
        config = find(objects, "ConfigMap", f"t-agora-{role}")["data"]
        assert (config["AGORA_TLS_CERT"], config["AGORA_TLS_KEY"], config["AGORA_TLS_CA"]) == \
            ("/etc/agora/mtls/tls.crt", "/etc/agora/mtls/tls.key", "/etc/agora/mtls/ca.crt")
        assert config["AGORA_TLS_TRUST_DOMAIN"] == "shop.example"
        if role == "gateway":
            assert "AGORA_HEALTH_LISTEN" not in config
            continue
        assert config["AGORA_HEALTH_LISTEN"] == "0.0.0.0:8086"
        ports = {p["name"]: p["containerPort"] for p in container(deployment)["ports"]}
        assert ports["health"] == 8086
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert container(deployment)[probe]["grpc"]["port"] == 8086, f"{role}'s {probe}"
        # Consul's checks reach the health port; its gRPC port stays its callers' alone.
        policy = find(objects, "NetworkPolicy", f"t-agora-{role}")
        from_consul = [r for r in policy["spec"]["ingress"]
                       if any(p.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component") == "consul"
                              for p in r.get("from", []))]
        assert [p["port"] for r in from_consul for p in r["ports"]] == [8086], f"{role}: {from_consul}"
    assert not named(objects, "Certificate"), "without an issuer the Secrets are the user's"


def test_with_a_cert_manager_issuer_each_role_gets_a_certificate_naming_its_identity():
    objects = render("--set", "mtls.enabled=true", "--set", "mtls.trustDomain=shop.example",
                     "--set", "mtls.certManager.issuerRef.name=agora-ca", "--set", "mtls.certManager.issuerRef.kind=ClusterIssuer")
    assert named(objects, "Certificate") == {f"t-agora-{role}" for role in ROLES}
    for role in ROLES:
        spec = find(objects, "Certificate", f"t-agora-{role}")["spec"]
        assert spec["secretName"] == f"t-agora-{role}-mtls"
        assert spec["uris"] == [f"spiffe://shop.example/{role}"] and "dnsNames" not in spec
        assert {"server auth", "client auth"} <= set(spec["usages"])
        assert spec["issuerRef"] == {"name": "agora-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}
        assert spec["privateKey"]["rotationPolicy"] == "Always"
    with pytest.raises(RenderError, match="mtls/certManager/issuerRef/kind"):
        render("--set", "mtls.enabled=true", "--set", "mtls.certManager.issuerRef.kind=Vault")


def test_auto_turns_mutual_tls_on_where_cert_manager_is_with_a_ca_of_the_releases_own():
    objects = render("--api-versions", "cert-manager.io/v1")
    assert named(objects, "Issuer") == {"t-agora-selfsigned", "t-agora-ca"}
    ca = find(objects, "Certificate", "t-agora-ca")["spec"]
    assert ca["isCA"] is True and ca["issuerRef"]["name"] == "t-agora-selfsigned"
    assert find(objects, "Issuer", "t-agora-ca")["spec"]["ca"]["secretName"] == ca["secretName"]
    for role in ROLES:
        spec = find(objects, "Certificate", f"t-agora-{role}")["spec"]
        assert spec["issuerRef"] == {"name": "t-agora-ca", "kind": "Issuer", "group": "cert-manager.io"}
        assert spec["uris"] == [f"spiffe://agora.local/{role}"]
        assert find(objects, "ConfigMap", f"t-agora-{role}")["data"]["AGORA_TLS_CA"] == "/etc/agora/mtls/ca.crt"
    off = render("--api-versions", "cert-manager.io/v1", "--set", "mtls.enabled=false")
    assert not {"Certificate", "Issuer"} & {o["kind"] for o in off}
    # An issuer of the user's own: no CA of the release's.
    theirs = render("--api-versions", "cert-manager.io/v1", "--set", "mtls.certManager.issuerRef.name=corp-ca")
    assert not named(theirs, "Issuer") and "t-agora-ca" not in named(theirs, "Certificate")
