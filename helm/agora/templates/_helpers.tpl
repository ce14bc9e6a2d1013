{{/* Names ------------------------------------------------------------------ */}}

{{- define "agora.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "agora.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The name of a component's objects: "<fullname>-<component>". Call with (list $ "gateway"). */}}
{{- define "agora.component" -}}
{{- $ := index . 0 -}}
{{- printf "%s-%s" (include "agora.fullname" $) (index . 1) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "agora.labels" -}}
{{- $ := index . 0 -}}
helm.sh/chart: {{ printf "%s-%s" $.Chart.Name $.Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ $.Release.Service }}
app.kubernetes.io/part-of: agora
app.kubernetes.io/version: {{ $.Chart.AppVersion | quote }}
{{ include "agora.selectorLabels" . }}
{{- end }}

{{- define "agora.selectorLabels" -}}
{{- $ := index . 0 -}}
app.kubernetes.io/name: {{ include "agora.name" $ }}
app.kubernetes.io/instance: {{ $.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/* A NetworkPolicy peer: the pods of one component of this release. */}}
{{- define "agora.peer" -}}
- podSelector:
    matchLabels:
      {{- include "agora.selectorLabels" . | nindent 6 }}
{{- end }}

{{- define "agora.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Where things are ------------------------------------------------------- */}}

{{- define "agora.consulAddress" -}}
{{- if .Values.consul.enabled }}
{{- printf "%s:8500" (include "agora.component" (list . "consul")) }}
{{- else }}
{{- required "discovery is consul but consul.enabled is false: set externalConsul.address (host:port), or discovery=static" .Values.externalConsul.address }}
{{- end }}
{{- end }}

{{- define "agora.kafkaBrokers" -}}
{{- if .Values.kafka.enabled }}
{{- printf "%s:9092" (include "agora.component" (list . "kafka")) }}
{{- else }}
{{- required "kafka.enabled is false: set externalKafka.brokers (host:port[,host:port...])" .Values.externalKafka.brokers }}
{{- end }}
{{- end }}

{{- define "agora.otlpEndpoint" -}}
{{- if .Values.otlp.endpoint }}
{{- .Values.otlp.endpoint }}
{{- else if .Values.jaeger.enabled }}
{{- printf "http://%s:4317" (include "agora.component" (list . "jaeger")) }}
{{- end }}
{{- end }}

{{/* TLS to external infrastructure ---------------------------------------- */}}

{{/* The Kafka security protocol the roles get: externalKafka.security with external brokers
when it is not plaintext; empty otherwise (the in-chart Kafka is plaintext). */}}
{{- define "agora.kafkaSecurity" -}}
{{- if and (not .Values.kafka.enabled) (ne (.Values.externalKafka.security | default "plaintext") "plaintext") }}
{{- .Values.externalKafka.security }}
{{- end }}
{{- end }}

{{/* Whether the roles log in to external brokers with SASL. */}}
{{- define "agora.kafkaSasl" -}}
{{- if eq (include "agora.kafkaSecurity" .) "sasl-ssl" }}true{{ end }}
{{- end }}

{{/* Where the files of a TLS Secret (a tls value: existingSecret, caKey, certKey, keyKey) are
mounted: /etc/agora/<name>/{ca.crt,tls.crt,tls.key}. Returns YAML {ca, cert, key}, each path
only when its key is given; {} without existingSecret. Call with (list tls name). */}}
{{- define "agora.tlsPaths" -}}
{{- $tls := index . 0 | default dict }}
{{- $dir := printf "/etc/agora/%s" (index . 1) }}
{{- $paths := dict }}
{{- if $tls.existingSecret }}
{{- if $tls.caKey }}{{ $_ := set $paths "ca" (printf "%s/ca.crt" $dir) }}{{ end }}
{{- if $tls.certKey }}{{ $_ := set $paths "cert" (printf "%s/tls.crt" $dir) }}{{ $_ := set $paths "key" (printf "%s/tls.key" $dir) }}{{ end }}
{{- end }}
{{- toYaml $paths }}
{{- end }}

{{/* The TLS Secrets a role mounts (read-only, each key to a fixed file name): the external
PostgreSQL's (services whose database is not the in-chart one), the external Kafka's (services,
with security ssl or sasl-ssl), the OTLP endpoint's (every role, with otlp.endpoint). Returns a
YAML list of {name, mountPath, secretName, items}; empty when none is set. Call with
(list $ role). */}}
{{- define "agora.tlsVolumes" -}}
{{- $ := index . 0 }}
{{- $role := index . 1 }}
{{- $service := ne $role "gateway" }}
{{- $wanted := list }}
{{- if and $service (not (include "agora.inChartDatabase" (list $ $role))) }}
{{- $wanted = append $wanted (list "postgresql" $.Values.externalPostgresql.tls) }}
{{- end }}
{{- if and $service (include "agora.kafkaSecurity" $) }}
{{- $wanted = append $wanted (list "kafka" $.Values.externalKafka.tls) }}
{{- end }}
{{- if $.Values.otlp.endpoint }}
{{- $wanted = append $wanted (list "otlp" $.Values.otlp.tls) }}
{{- end }}
{{- $volumes := list }}
{{- range $wanted }}
{{- $name := index . 0 }}
{{- $tls := index . 1 | default dict }}
{{- if $tls.existingSecret }}
{{- $items := list }}
{{- with $tls.caKey }}{{ $items = append $items (dict "key" . "path" "ca.crt") }}{{ end }}
{{- with $tls.certKey }}{{ $items = append $items (dict "key" . "path" "tls.crt") }}{{ end }}
{{- with $tls.keyKey }}{{ $items = append $items (dict "key" . "path" "tls.key") }}{{ end }}
{{- $volumes = append $volumes (dict "name" (printf "%s-tls" $name) "mountPath" (printf "/etc/agora/%s" $name) "secretName" $tls.existingSecret "items" $items) }}
{{- end }}
{{- end }}
{{- toYaml $volumes }}
{{- end }}

{{/* A role's database URL as the chart stores it (roles.<role>.database.url): with
externalPostgresql's sslmode and files appended to its query, after the parameters it has.
Call with (list $ role url). */}}
{{- define "agora.databaseUrlWithTls" -}}
{{- $ := index . 0 }}
{{- $role := index . 1 }}
{{- $url := index . 2 }}
{{- $pg := $.Values.externalPostgresql }}
{{- $params := list }}
{{- with $pg.sslmode }}{{ $params = append $params (list "sslmode" .) }}{{ end }}
{{- $files := include "agora.tlsPaths" (list $pg.tls "postgresql") | fromYaml }}
{{- with $files.ca }}{{ $params = append $params (list "sslrootcert" .) }}{{ end }}
{{- with $files.cert }}{{ $params = append $params (list "sslcert" .) }}{{ end }}
{{- with $files.key }}{{ $params = append $params (list "sslkey" .) }}{{ end }}
{{- $query := list }}
{{- range $params }}
{{- if regexMatch (printf "[?&]%s=" (index . 0)) $url }}
{{- fail (printf "roles.%s.database.url has %s= already, and externalPostgresql sets it: take it out of one of them" $role (index . 0)) }}
{{- end }}
{{- $query = append $query (printf "%s=%s" (index . 0) (index . 1)) }}
{{- end }}
{{- if $query }}
{{- $sep := "?" }}
{{- if contains "?" $url }}{{ $sep = "&" }}{{ end }}
{{- if or (hasSuffix "?" $url) (hasSuffix "&" $url) }}{{ $sep = "" }}{{ end }}
{{- printf "%s%s%s" $url $sep (join "&" $query) }}
{{- else }}
{{- $url }}
{{- end }}
{{- end }}

{{/* Settings that cannot work together, refused at render with the reason (the binary would
refuse them at start). Renders nothing. */}}
{{- define "agora.validate" -}}
{{- $consul := .Values.externalConsul }}
{{- if and $consul.token $consul.existingSecret }}
{{- fail "set externalConsul.token or externalConsul.existingSecret, not both" }}
{{- end }}
{{- range $name, $tls := dict "externalKafka.tls" .Values.externalKafka.tls "externalPostgresql.tls" .Values.externalPostgresql.tls "otlp.tls" .Values.otlp.tls }}
{{- if ne (not $tls.certKey) (not $tls.keyKey) }}
{{- fail (printf "%s: set certKey and keyKey together (a client certificate and its key), or neither" $name) }}
{{- end }}
{{- if and $tls.existingSecret (not $tls.caKey) (not $tls.certKey) }}
{{- fail (printf "%s.existingSecret is set but no key of it is used: set caKey, or certKey and keyKey" $name) }}
{{- end }}
{{- if and $tls.certKey (not $tls.existingSecret) }}
{{- fail (printf "%s.certKey needs %s.existingSecret (the Secret holding it)" $name $name) }}
{{- end }}
{{- end }}
{{- if not .Values.kafka.enabled }}
{{- $k := .Values.externalKafka }}
{{- $security := $k.security | default "plaintext" }}
{{- $credentials := or $k.sasl.username $k.sasl.password $k.sasl.existingSecret }}
{{- if and (eq $security "plaintext") (or $credentials $k.tls.existingSecret) }}
{{- fail "externalKafka.sasl and externalKafka.tls need externalKafka.security ssl or sasl-ssl (SASL credentials never travel in the clear)" }}
{{- end }}
{{- if and (eq $security "ssl") $credentials }}
{{- fail "externalKafka.sasl credentials need externalKafka.security sasl-ssl" }}
{{- end }}
{{- if eq $security "sasl-ssl" }}
{{- if not $k.sasl.username }}
{{- fail "externalKafka.security sasl-ssl needs externalKafka.sasl.username" }}
{{- end }}
{{- if and $k.sasl.password $k.sasl.existingSecret }}
{{- fail "set externalKafka.sasl.password or externalKafka.sasl.existingSecret, not both" }}
{{- end }}
{{- if and $k.sasl.password .Values.existingSecret }}
{{- fail "externalKafka.sasl.password would be dropped: with existingSecret, put the password in it as kafka-sasl-password (or use externalKafka.sasl.existingSecret)" }}
{{- end }}
{{- if not (or $k.sasl.password $k.sasl.existingSecret .Values.existingSecret) }}
{{- fail "externalKafka.security sasl-ssl needs the password: externalKafka.sasl.password, externalKafka.sasl.existingSecret, or kafka-sasl-password in existingSecret" }}
{{- end }}
{{- end }}
{{- end }}
{{- $pg := .Values.externalPostgresql }}
{{- if $pg.tls.existingSecret }}
{{- if not $pg.sslmode }}
{{- fail "externalPostgresql.tls needs externalPostgresql.sslmode (verify-full or verify-ca to check the server's certificate)" }}
{{- else if eq $pg.sslmode "disable" }}
{{- fail "externalPostgresql.tls is set but externalPostgresql.sslmode is disable" }}
{{- end }}
{{- end }}
{{- if and .Values.otlp.tls.existingSecret (not (hasPrefix "https://" .Values.otlp.endpoint)) }}
{{- fail "otlp.tls needs an https:// otlp.endpoint (the in-chart Jaeger and http:// endpoints are plaintext)" }}
{{- end }}
{{- end }}

{{/* The Secret holding the JWT key, the admin password and the database URLs. */}}
{{- define "agora.secretName" -}}
{{- default (include "agora.fullname" .) .Values.existingSecret }}
{{- end }}

{{/* The last ":PORT" of "host:port" or "scheme://host:port[/...]"; empty when none.
(sprig's regexReplaceAll takes the string second: it cannot be piped.) */}}
{{- define "agora.portOf" -}}
{{- $hostport := regexReplaceAll "/.*$" (regexReplaceAll "^[A-Za-z][A-Za-z0-9+.-]*://" . "") "" }}
{{- if regexMatch ":[0-9]+$" $hostport }}{{ regexFind "[0-9]+$" $hostport }}{{ end }}
{{- end }}

{{/* The TCP port egress to the external Consul opens: externalConsul.port, else the address's. */}}
{{- define "agora.externalConsulPort" -}}
{{- .Values.externalConsul.port | default (include "agora.portOf" .Values.externalConsul.address) | default "8500" }}
{{- end }}

{{/* The TCP port egress to the OTLP endpoint opens: its own, else the scheme's. */}}
{{- define "agora.otlpPort" -}}
{{- include "agora.portOf" .Values.otlp.endpoint | default (ternary "443" "80" (hasPrefix "https://" .Values.otlp.endpoint)) }}
{{- end }}

{{/* NetworkPolicy peers Consul's health checks come from: the in-chart Consul, or
networkPolicy.consulCheckFrom (empty: none, so no rule opens the roles' ports to them). */}}
{{- define "agora.consulCheckPeers" -}}
{{- if eq .Values.discovery "consul" }}
{{- if .Values.consul.enabled }}
{{- include "agora.peer" (list . "consul") }}
{{- else if .Values.networkPolicy.consulCheckFrom }}
{{- toYaml .Values.networkPolicy.consulCheckFrom }}
{{- end }}
{{- end }}
{{- end }}

{{/* Whether role (list $ role) has a database to reach in the in-chart PostgreSQL. */}}
{{- define "agora.inChartDatabase" -}}
{{- $ := index . 0 }}
{{- $db := (index $.Values.roles (index . 1)).database }}
{{- if and $.Values.postgresql.enabled (not $db.url) (not $db.existingSecret) }}true{{ end }}
{{- end }}

{{/* The database name of a service: agora_user, agora_product, ... */}}
{{- define "agora.databaseName" -}}
{{- printf "agora_%s" (trimSuffix "-service" .) }}
{{- end }}

{{/* Generated secrets are kept across upgrades (and, as the Secret is kept on uninstall, across
a reinstall): the value already in the cluster wins. */}}
{{- define "agora.generated" -}}
{{- $ := index . 0 }}
{{- $key := index . 1 }}
{{- $given := index . 2 }}
{{- if $given }}
{{- $given }}
{{- else }}
{{- $existing := lookup "v1" "Secret" $.Release.Namespace (include "agora.fullname" $) }}
{{- if and $existing (hasKey $existing.data $key) }}
{{- index $existing.data $key | b64dec }}
{{- else }}
{{- randAlphaNum 40 }}
{{- end }}
{{- end }}
{{- end }}

{{/* Hardened container settings, for every container the chart runs. Call with
(dict "readOnly" true); only dev images that write into their own tree pass false. */}}
{{- define "agora.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: {{ .readOnly }}
runAsNonRoot: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* The keys and plain values of the Secret the chart creates (none with existingSecret),
computed once per render and cached in the root context, so that the Secret and the roles'
checksums see the same generated values. Call with the root context; returns YAML. */}}
{{- define "agora.secretData" -}}
{{- if not .Values.existingSecret }}
{{- if not (hasKey . "agoraSecretData") }}
{{- $data := dict }}
{{- $_ := set $data "jwt-secret" (include "agora.generated" (list . "jwt-secret" .Values.jwtSecret)) }}
{{- $_ := set $data "admin-password" (include "agora.generated" (list . "admin-password" .Values.adminPassword)) }}
{{- if .Values.postgresql.enabled }}
{{- $_ := set $data "postgres-password" (include "agora.generated" (list . "postgres-password" .Values.postgresql.password)) }}
{{- end }}
{{- range $role, $r := .Values.roles }}
{{- if and (ne $role "gateway") $r.database.url (not $r.database.existingSecret) }}
{{- $_ := set $data (printf "%s-database-url" $role) (include "agora.databaseUrlWithTls" (list $ $role $r.database.url)) }}
{{- end }}
{{- end }}
{{- with .Values.externalConsul.token }}
{{- $_ := set $data "consul-token" . }}
{{- end }}
{{- if and (include "agora.kafkaSasl" .) .Values.externalKafka.sasl.password }}
{{- $_ := set $data "kafka-sasl-password" .Values.externalKafka.sasl.password }}
{{- end }}
{{- $_ := set . "agoraSecretData" $data }}
{{- end }}
{{- toYaml (get . "agoraSecretData") }}
{{- end }}
{{- end }}

{{/* A role's settings, as the AGORA_* / OTEL_* variables `agora <role>` reads: the data of its
ConfigMap. Call with (list $ role). */}}
{{- define "agora.configData" -}}
{{- $ := index . 0 }}
{{- $role := index . 1 }}
{{- $r := index $.Values.roles $role }}
{{- $service := ne $role "gateway" -}}
RUST_LOG: {{ $.Values.logLevel | quote }}
AGORA_LOG_FORMAT: json
AGORA_LISTEN: {{ printf "0.0.0.0:%v" $r.port | quote }}
AGORA_DISCOVERY: {{ $.Values.discovery | quote }}
{{- if eq $.Values.discovery "consul" }}
AGORA_CONSUL_ADDR: {{ include "agora.consulAddress" $ | quote }}
{{- end }}
{{- if include "agora.mtls" $ }}
{{- /* Mutual TLS between the roles: the files of the role's Secret <fullname>-<role>-mtls. */}}
AGORA_TLS_CERT: /etc/agora/mtls/tls.crt
AGORA_TLS_KEY: /etc/agora/mtls/tls.key
AGORA_TLS_CA: /etc/agora/mtls/ca.crt
AGORA_TLS_TRUST_DOMAIN: {{ $.Values.mtls.trustDomain | quote }}
AGORA_TLS_RELOAD_SECS: {{ $.Values.mtls.reloadSecs | quote }}
{{- if $service }}
AGORA_HEALTH_LISTEN: {{ printf "0.0.0.0:%v" $.Values.mtls.healthPort | quote }}
{{- end }}
{{- end }}
{{- with include "agora.otlpEndpoint" $ }}
OTEL_EXPORTER_OTLP_ENDPOINT: {{ . | quote }}
OTEL_SERVICE_NAME: {{ $role | quote }}
OTEL_TRACES_SAMPLER: {{ $.Values.otlp.sampler | quote }}
{{- with $.Values.otlp.samplerArg }}
OTEL_TRACES_SAMPLER_ARG: {{ . | quote }}
{{- end }}
{{- if $.Values.otlp.endpoint }}
{{- $files := include "agora.tlsPaths" (list $.Values.otlp.tls "otlp") | fromYaml }}
{{- with $files.ca }}
OTEL_EXPORTER_OTLP_CERTIFICATE: {{ . | quote }}
{{- end }}
{{- if $files.cert }}
OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE: {{ $files.cert | quote }}
OTEL_EXPORTER_OTLP_CLIENT_KEY: {{ $files.key | quote }}
{{- end }}
{{- end }}
{{- else }}
OTEL_TRACES_EXPORTER: none
{{- end }}
{{- if $service }}
AGORA_METRICS_LISTEN: {{ printf "0.0.0.0:%v" $r.metricsPort | quote }}
AGORA_EVENTS: kafka
AGORA_KAFKA_BROKERS: {{ include "agora.kafkaBrokers" $ | quote }}
AGORA_KAFKA_PARTITIONS: {{ $.Values.kafka.partitions | quote }}
{{- if not $.Values.kafka.enabled }}
AGORA_KAFKA_REPLICATION: {{ $.Values.externalKafka.replication | quote }}
{{- with include "agora.kafkaSecurity" $ }}
{{- $k := $.Values.externalKafka }}
AGORA_KAFKA_SECURITY: {{ . | quote }}
{{- if include "agora.kafkaSasl" $ }}
AGORA_KAFKA_SASL_MECHANISM: {{ $k.sasl.mechanism | quote }}
AGORA_KAFKA_SASL_USERNAME: {{ $k.sasl.username | quote }}
{{- end }}
{{- $files := include "agora.tlsPaths" (list $k.tls "kafka") | fromYaml }}
{{- with $files.ca }}
AGORA_KAFKA_TLS_CA: {{ . | quote }}
{{- end }}
{{- if $files.cert }}
AGORA_KAFKA_TLS_CERT: {{ $files.cert | quote }}
AGORA_KAFKA_TLS_KEY: {{ $files.key | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- if eq $role "gateway" }}
AGORA_REQUEST_TIMEOUT_MS: {{ $r.requestTimeoutMs | quote }}
AGORA_RATE_LIMIT_PER_SECOND: {{ $r.rateLimitPerSecond | quote }}
AGORA_RATE_LIMIT_BURST: {{ $r.rateLimitBurst | quote }}
AGORA_SIGN_IN_LIMIT_PER_MINUTE: {{ $r.signInLimitPerMinute | quote }}
AGORA_SIGN_IN_LIMIT_BURST: {{ $r.signInLimitBurst | quote }}
{{- with $r.corsOrigins }}
AGORA_CORS_ORIGINS: {{ join "," . | quote }}
{{- end }}
{{- end }}
{{- if eq $role "user-service" }}
AGORA_ADMIN_EMAIL: {{ $.Values.adminEmail | quote }}
{{- end }}
{{- if eq $role "product-service" }}
AGORA_SEED_DEMO: {{ $r.seedDemo | quote }}
{{- end }}
{{- /* Static discovery: the callers reach the others through this chart's Services. */}}
{{- if eq $.Values.discovery "static" }}
{{- if has $role (list "gateway" "order-service") }}
AGORA_USER_ADDR: {{ printf "%s:%v" (include "agora.component" (list $ "user-service")) (index $.Values.roles "user-service").port | quote }}
AGORA_PRODUCT_ADDR: {{ printf "%s:%v" (include "agora.component" (list $ "product-service")) (index $.Values.roles "product-service").port | quote }}
{{- end }}
{{- if eq $role "gateway" }}
AGORA_ORDER_ADDR: {{ printf "%s:%v" (include "agora.component" (list $ "order-service")) (index $.Values.roles "order-service").port | quote }}
AGORA_PAYMENT_ADDR: {{ printf "%s:%v" (include "agora.component" (list $ "payment-service")) (index $.Values.roles "payment-service").port | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* A role's container env beyond its ConfigMap: its address, its secrets (references into the
Secret) and its extraEnv. Call with (list $ role). */}}
{{- define "agora.env" -}}
{{- $ := index . 0 }}
{{- $role := index . 1 }}
{{- $r := index $.Values.roles $role }}
{{- $gateway := eq $role "gateway" }}
{{- $secret := include "agora.secretName" $ -}}
- name: POD_IP
  valueFrom:
    fieldRef:
      fieldPath: status.podIP
{{- if include "agora.otlpEndpoint" $ }}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: NODE_NAME
  valueFrom:
    fieldRef:
      fieldPath: spec.nodeName
# The namespace the pod runs in, which for k8s/agora.yaml (kubectl apply -n ANY) need not be
# the one it was rendered for.
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
# Every span names the namespace, pod and node it came from (OpenTelemetry's k8s.* resource
# attributes).
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ printf "service.namespace=$(POD_NAMESPACE),k8s.namespace.name=$(POD_NAMESPACE),k8s.pod.name=$(POD_NAME),k8s.node.name=$(NODE_NAME),%s" $.Values.otlp.resourceAttributes | trimSuffix "," | quote }}
{{- end }}
{{- if eq $.Values.discovery "consul" }}
# Registered in Consul under the pod's own address.
- name: AGORA_ADVERTISE_ADDR
  value: {{ printf "$(POD_IP):%v" $r.port | quote }}
{{- if $.Values.externalConsul.existingSecret }}
- name: AGORA_CONSUL_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ $.Values.externalConsul.existingSecret }}
      key: {{ $.Values.externalConsul.existingSecretKey }}
{{- else if or $.Values.externalConsul.token (and $.Values.existingSecret (not $.Values.consul.enabled)) }}
- name: AGORA_CONSUL_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: consul-token
      optional: {{ not $.Values.externalConsul.token }}
{{- end }}
{{- end }}
{{- if has $role (list "gateway" "user-service") }}
- name: AGORA_JWT_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: jwt-secret
{{- end }}
{{- if eq $role "user-service" }}
- name: AGORA_ADMIN_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: admin-password
{{- end }}
{{- if and (not $gateway) (include "agora.kafkaSasl" $) }}
{{- $sasl := $.Values.externalKafka.sasl }}
- name: AGORA_KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ default $secret $sasl.existingSecret }}
      key: {{ if $sasl.existingSecret }}{{ $sasl.passwordKey }}{{ else }}kafka-sasl-password{{ end }}
{{- end }}
{{- if not $gateway }}
{{- if include "agora.inChartDatabase" (list $ $role) }}
- name: POSTGRES_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: postgres-password
- name: AGORA_DATABASE_URL
  value: {{ printf "postgres://postgres:$(POSTGRES_PASSWORD)@%s:5432/%s" (include "agora.component" (list $ "postgresql")) (include "agora.databaseName" $role) | quote }}
{{- else }}
- name: AGORA_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ default $secret $r.database.existingSecret }}
      key: {{ if $r.database.existingSecret }}{{ $r.database.existingSecretKey }}{{ else }}{{ $role }}-database-url{{ end }}
{{- end }}
{{- end }}
{{- with $r.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The pod annotation that rolls a role's pods when what it reads changes, and only then: its
ConfigMap's data, its env, and the values of the keys it reads from the Secret the chart
creates. (A Secret of your own, existingSecret or database.existingSecret, is read by name:
changing its content rolls nothing; restart the role yourself.) Call with (list $ role). */}}
{{- define "agora.checksum" -}}
{{- $ := index . 0 }}
{{- $role := index . 1 }}
{{- $env := include "agora.env" . | fromYamlArray }}
{{- $secretData := include "agora.secretData" $ | fromYaml }}
{{- $secrets := dict }}
{{- if not $.Values.existingSecret }}
{{- range $env }}
{{- with dig "valueFrom" "secretKeyRef" dict . }}
{{- if and (eq .name (include "agora.fullname" $)) (hasKey $secretData .key) }}
{{- $_ := set $secrets .key (get $secretData .key) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- dict "config" (include "agora.configData" .) "env" $env "secrets" $secrets | toYaml | sha256sum }}
{{- end }}

{{/* The Secret with a role's mutual-TLS files (tls.crt, tls.key, ca.crt). Call with (list $ role). */}}
{{- define "agora.mtlsSecret" -}}
{{- printf "%s-mtls" (include "agora.component" .) }}
{{- end }}

{{/* "true" when the roles speak mutual TLS: mtls.enabled true, or auto on a cluster that has
cert-manager (whose certificates the chart then asks for); "" otherwise. */}}
{{- define "agora.mtls" -}}
{{- $enabled := .Values.mtls.enabled }}
{{- if or (eq (toString $enabled) "true") (and (eq (toString $enabled) "auto") (.Capabilities.APIVersions.Has "cert-manager.io/v1")) -}}
true
{{- end }}
{{- end }}

{{/* The cert-manager issuer of the roles' certificates: mtls.certManager.issuerRef, or with
mtls.enabled auto and none given, the chart's own CA (templates/certificates.yaml); empty when the
Secrets are the user's. */}}
{{- define "agora.mtlsIssuer" -}}
{{- $m := .Values.mtls }}
{{- if $m.certManager.issuerRef.name }}
{{- toYaml $m.certManager.issuerRef }}
{{- else if and (include "agora.mtls" .) (eq (toString $m.enabled) "auto") }}
{{- toYaml (dict "name" (printf "%s-ca" (include "agora.fullname" .)) "kind" "Issuer" "group" "cert-manager.io") }}
{{- end }}
{{- end }}
