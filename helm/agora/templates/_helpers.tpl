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

{{/* The Secret holding the JWT key, the admin password and the database URLs. */}}
{{- define "agora.secretName" -}}
{{- default (include "agora.fullname" .) .Values.existingSecret }}
{{- end }}

{{/* The last ":PORT" of "host:port" or "scheme://host:port[/...]"; empty when none. */}}
{{- define "agora.portOf" -}}
{{- $hostport := regexReplaceAll "^[a-z]+://" . "" | regexReplaceAll "/.*$" "" }}
{{- if regexMatch ":[0-9]+$" $hostport }}{{ regexFind "[0-9]+$" $hostport }}{{ end }}
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

{{/* Generated secrets are kept across upgrades: the value already in the cluster wins. */}}
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
