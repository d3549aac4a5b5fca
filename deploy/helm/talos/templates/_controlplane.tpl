{{/*
What every command on the database needs (serve, migrate): the DSN and the
HMAC secret, from the Secret by secretKeyRef, never in the ConfigMap.
*/}}
{{- define "talos.controlPlane.storeEnv" -}}
{{- $secret := include "talos.secretName" . -}}
- name: TALOS_DB_DSN
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: dsn
- name: TALOS_SECRETS_HMAC_CURRENT
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: hmacCurrent
{{- end }}

{{/* The environment of talos serve: the store's, plus the admin and sidecar tokens. */}}
{{- define "talos.controlPlane.env" -}}
{{- $secret := include "talos.secretName" . -}}
{{ include "talos.controlPlane.storeEnv" . }}
- name: TALOS_SERVE_ADMIN_AUTH_BEARER_TOKENS
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: adminToken
- name: TALOS_SERVE_ADMIN_AUTH_SIDECAR_TOKENS
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: sidecarToken
{{- end }}

{{/*
The container that runs `talos migrate up`: (dict "root" $ "data" "true"
when it mounts the SQLite volume "resources" {...}).
*/}}
{{- define "talos.migrateContainer" -}}
{{- $cp := .root.Values.controlPlane -}}
- name: migrate
  image: {{ include "talos.image" (dict "root" .root "image" $cp.image) }}
  imagePullPolicy: {{ include "talos.pullPolicy" (dict "root" .root "image" $cp.image) }}
  args: ["migrate", "up", "--config", "/etc/talos/talos.yaml"]
  env:
    {{- include "talos.controlPlane.storeEnv" .root | nindent 4 }}
    {{- with $cp.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml $cp.securityContext | nindent 4 }}
  volumeMounts:
    - name: config
      mountPath: /etc/talos/talos.yaml
      subPath: talos.yaml
      readOnly: true
    - name: tmp
      mountPath: /tmp
    {{- if .data }}
    - name: data
      mountPath: {{ include "talos.sqliteDir" .root }}
    {{- end }}
    {{- with $cp.extraVolumeMounts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end }}
