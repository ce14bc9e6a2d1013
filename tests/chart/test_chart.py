"""The Helm chart, as `helm` renders it: lint, Kubernetes' own schemas, and the switches users
rely on. Run by scripts/chart.sh (which `make test` calls) with the project's virtualenv; needs
helm from scripts/go-tools.sh in AGORA_HELM."""

import base64
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
    out = subprocess.run(
        [HELM, "template", release, str(CHART), "--namespace", "shop", *args],
        capture_output=True, text=True, check=False,
    )
    if out.returncode != 0:
        raise RenderError(out.stderr)
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
        for kind in ["Deployment", "Service", "ServiceAccount", "ConfigMap", "HorizontalPodAutoscaler",
                     "PodDisruptionBudget", "NetworkPolicy"]:
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
        assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
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
    assert config["AGORA_KAFKA_BROKERS"] == "kafka-0.kafka.data:9092,kafka-1.kafka.data:9092"
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
