{{/* Names. */}}
{{- define "talos.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "talos.fullname" -}}
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

{{- define "talos.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Component names: the control plane is the fullname itself. */}}
{{- define "talos.proxyName" -}}
{{- printf "%s-proxy" (include "talos.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- define "talos.injectorName" -}}
{{- printf "%s-injector" (include "talos.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- define "talos.secretName" -}}
{{- .Values.existingSecret | default (include "talos.fullname" .) }}
{{- end }}

{{/*
Labels. Call with (dict "root" $ "component" "control-plane").
*/}}
{{- define "talos.selectorLabels" -}}
app.kubernetes.io/name: {{ include "talos.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "talos.labels" -}}
helm.sh/chart: {{ include "talos.chart" .root }}
{{ include "talos.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: talos
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
The image of a component: (dict "root" $ "image" .Values.controlPlane.image).
The component's fields win over the global image's.
*/}}
{{- define "talos.image" -}}
{{- $img := merge (deepCopy (.image | default dict)) (deepCopy .root.Values.image) }}
{{- printf "%s:%s" $img.repository (toString ($img.tag | default .root.Chart.AppVersion)) }}
{{- end }}
{{- define "talos.pullPolicy" -}}
{{- (.image | default dict).pullPolicy | default .root.Values.image.pullPolicy }}
{{- end }}

{{/*
The database driver: controlPlane.db.driver, or the scheme of
controlPlane.db.dsn, or sqlite (the chart's default DSN). Fails on an unknown
scheme, on a driver that contradicts the DSN, and with existingSecret and no
driver (the DSN is then out of the chart's sight).
*/}}
{{- define "talos.dbDriver" -}}
{{- $db := .Values.controlPlane.db }}
{{- $fromDSN := "" }}
{{- if $db.dsn }}
{{- $scheme := regexFind "^[a-z0-9]+://" $db.dsn | trimSuffix "://" }}
{{- $schemes := dict "sqlite" "sqlite" "sqlite3" "sqlite" "postgres" "postgres" "postgresql" "postgres" "mysql" "mysql" "cockroach" "cockroach" "cockroachdb" "cockroach" }}
{{- $fromDSN = get $schemes $scheme }}
{{- if not $fromDSN }}
{{- fail "controlPlane.db.dsn: unknown scheme; use sqlite://, postgres://, mysql:// or cockroach:// (docs/storage.md)" }}
{{- end }}
{{- end }}
{{- if and $db.driver $fromDSN (ne $db.driver $fromDSN) }}
{{- fail (printf "controlPlane.db.driver is %s but controlPlane.db.dsn is a %s DSN" $db.driver $fromDSN) }}
{{- end }}
{{- if and .Values.existingSecret (not $db.driver) }}
{{- fail "controlPlane.db.driver is required with existingSecret: the chart cannot read the DSN in your Secret, and must know whether it is SQLite (1 replica, a volume) or not" }}
{{- end }}
{{- $db.driver | default $fromDSN | default "sqlite" }}
{{- end }}

{{- define "talos.sqlite" -}}
{{- if eq (include "talos.dbDriver" .) "sqlite" }}true{{ end }}
{{- end }}

{{/* Where SQLite keeps its file: the persistent volume. */}}
{{- define "talos.sqliteDir" -}}/var/lib/talos{{- end }}
{{- define "talos.defaultDSN" -}}sqlite://{{ include "talos.sqliteDir" . }}/talos.db{{- end }}

{{/*
Fails when one of the dotted paths is present in a config map:
(dict "config" $cfg "where" "controlPlane.config" "paths" (list ...) "why" "...").
*/}}
{{- define "talos.refuseKeys" -}}
{{- range $path := .paths }}
{{- $node := $.config }}
{{- $found := true }}
{{- range $k := splitList "." $path }}
{{- if and $found (kindIs "map" $node) (hasKey $node $k) }}
{{- $node = index $node $k }}
{{- else }}
{{- $found = false }}
{{- end }}
{{- end }}
{{- if $found }}
{{- fail (printf "%s.%s: %s" $.where $path $.why) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Ports and probe schemes read from the configs, so that containerPort and
probes follow a changed serve.*.port or tls.enabled.
*/}}
{{- define "talos.cp.httpPort" -}}{{ int (dig "serve" "http" "port" 4420 (.Values.controlPlane.config | default dict)) }}{{- end }}
{{- define "talos.cp.grpcPort" -}}{{ int (dig "serve" "grpc" "port" 4421 (.Values.controlPlane.config | default dict)) }}{{- end }}
{{- define "talos.cp.metricsPort" -}}{{ int (dig "serve" "metrics" "port" 4422 (.Values.controlPlane.config | default dict)) }}{{- end }}
{{- define "talos.cp.metricsScheme" -}}{{ dig "serve" "metrics" "tls" "enabled" false (.Values.controlPlane.config | default dict) | ternary "HTTPS" "HTTP" }}{{- end }}
{{- define "talos.proxy.extauthzPort" -}}{{ int (dig "proxy" "extauthz" "port" 9191 (.Values.sidecar.config | default dict)) }}{{- end }}
{{- define "talos.proxy.httpPort" -}}{{ int (dig "proxy" "http" "port" 4430 (.Values.sidecar.config | default dict)) }}{{- end }}
{{- define "talos.proxy.metricsPort" -}}{{ int (dig "proxy" "metrics" "port" 4432 (.Values.sidecar.config | default dict)) }}{{- end }}
{{- define "talos.proxy.metricsScheme" -}}{{ dig "proxy" "metrics" "tls" "enabled" false (.Values.sidecar.config | default dict) | ternary "HTTPS" "HTTP" }}{{- end }}

{{/* The talos.yaml of the control plane. */}}
{{- define "talos.controlPlane.config" -}}
{{- toYaml (.Values.controlPlane.config | default dict) }}
{{- end }}

{{/* The talos.yaml of the sidecars. */}}
{{- define "talos.sidecar.config" -}}
{{- toYaml (.Values.sidecar.config | default dict) }}
{{- end }}

{{/* The control plane's gRPC address as the sidecars dial it. */}}
{{- define "talos.upstream" -}}
{{- .Values.sidecar.upstream | default (printf "%s.%s.svc:%v" (include "talos.fullname" .) .Release.Namespace (int .Values.controlPlane.service.ports.grpc)) }}
{{- end }}

{{/* drain delay + timeout + 5 s: (dict "shutdown" .Values.x.shutdown). */}}
{{- define "talos.gracePeriod" -}}
{{- add (int .shutdown.drainDelaySeconds) (int .shutdown.timeoutSeconds) 5 }}
{{- end }}

{{/* Env of the lifecycle: (dict "prefix" "SERVE" "shutdown" ...). */}}
{{- define "talos.shutdownEnv" -}}
- name: TALOS_{{ .prefix }}_SHUTDOWN_DRAIN_DELAY
  value: {{ printf "%ds" (int .shutdown.drainDelaySeconds) | quote }}
- name: TALOS_{{ .prefix }}_SHUTDOWN_TIMEOUT
  value: {{ printf "%ds" (int .shutdown.timeoutSeconds) | quote }}
{{- end }}

{{/* The sidecar token Secret reference: (dict "root" $ "injected" bool). */}}
{{- define "talos.sidecarTokenRef" -}}
{{- $ts := .root.Values.sidecar.tokenSecret }}
{{- if .injected }}
name: {{ $ts.name | default "talos-sidecar-token" }}
key: {{ $ts.key | default "token" }}
{{- else }}
name: {{ $ts.name | default (include "talos.secretName" .root) }}
key: {{ $ts.key | default "sidecarToken" }}
{{- end }}
{{- end }}

{{/*
The environment a sidecar needs besides its config file, in every mode:
upstream, token, tenant, Redis, lifecycle. (dict "root" $ "injected" bool).
*/}}
{{- define "talos.sidecarEnv" -}}
{{- $s := .root.Values.sidecar -}}
- name: TALOS_PROXY_UPSTREAM
  value: {{ include "talos.upstream" .root | quote }}
- name: TALOS_PROXY_UPSTREAM_TOKEN
  valueFrom:
    secretKeyRef:
      {{- include "talos.sidecarTokenRef" . | trim | nindent 6 }}
{{- with $s.tenant }}
- name: TALOS_PROXY_TENANT
  value: {{ . | quote }}
{{- end }}
{{- include "talos.sidecarCommonEnv" .root }}
{{- end }}

{{/*
The environment of every sidecar, injected or not, besides upstream, token
and tenant: the shared Redis, the lifecycle, sidecar.extraEnv. Injected
sidecars resolve the secretKeyRefs in their own namespace.
*/}}
{{- define "talos.sidecarCommonEnv" -}}
{{- $s := .Values.sidecar }}
{{- if $s.redis.addrs }}
{{- $ref := dict "name" (include "talos.secretName" .) "key" "redisSecret" }}
{{- if $s.redis.existingSecret }}
{{- $ref = dict "name" $s.redis.existingSecret "key" $s.redis.secretKey }}
{{- end }}
- name: TALOS_PROXY_CACHE_REDIS_ENABLED
  value: "true"
- name: TALOS_PROXY_CACHE_REDIS_ADDRS
  value: {{ join "," $s.redis.addrs | quote }}
- name: TALOS_PROXY_CACHE_REDIS_SECRET
  valueFrom:
    secretKeyRef:
      {{- toYaml $ref | nindent 6 }}
{{- if and $s.redis.existingSecret $s.redis.passwordKey }}
- name: TALOS_PROXY_CACHE_REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $s.redis.existingSecret }}
      key: {{ $s.redis.passwordKey }}
{{- end }}
{{- end }}
{{ include "talos.shutdownEnv" (dict "prefix" "PROXY" "shutdown" $s.shutdown) }}
{{- with $s.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* imagePullSecrets block for a pod spec. */}}
{{- define "talos.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Scheduling fields of a pod spec from a component's values. */}}
{{- define "talos.scheduling" -}}
{{- with .priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* The service account name of a component: (dict "root" $ "sa" .Values.x.serviceAccount "default" name). */}}
{{- define "talos.serviceAccountName" -}}
{{- if .sa.create }}{{ .sa.name | default .default }}{{ else }}{{ .sa.name | default "default" }}{{ end }}
{{- end }}

