{{- define "event-bridge.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "event-bridge.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "event-bridge.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "event-bridge.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "event-bridge.secretName" -}}
{{ .Values.existingSecret | default (include "event-bridge.fullname" .) }}
{{- end -}}

{{- define "event-bridge.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{ .Values.serviceAccount.name | default (include "event-bridge.fullname" .) }}
{{- else -}}
{{ .Values.serviceAccount.name | default "default" }}
{{- end -}}
{{- end -}}

{{- define "event-bridge.sasl" -}}
{{- if hasPrefix "SASL_" .Values.kafka.securityProtocol }}true{{ end -}}
{{- end -}}

{{/* Environment of every bridge container: settings from the ConfigMap, secrets from the Secret. */}}
{{- define "event-bridge.env" -}}
envFrom:
  - configMapRef:
      name: {{ include "event-bridge.fullname" . }}
env:
  - name: BRIDGE_ADMIN_TOKEN
    valueFrom: {secretKeyRef: {name: {{ include "event-bridge.secretName" . }}, key: admin-token}}
  - name: BRIDGE_SECRET_KEY
    valueFrom: {secretKeyRef: {name: {{ include "event-bridge.secretName" . }}, key: secret-key}}
  - name: BRIDGE_INGEST_TOKEN
    valueFrom: {secretKeyRef: {name: {{ include "event-bridge.secretName" . }}, key: ingest-token, optional: true}}
  {{- if include "event-bridge.sasl" . }}
  - name: BRIDGE_KAFKA_SASL_PASSWORD
    valueFrom: {secretKeyRef: {name: {{ include "event-bridge.secretName" . }}, key: kafka-sasl-password}}
  {{- end }}
{{- end -}}

{{- define "event-bridge.volumeMounts" -}}
volumeMounts:
  - {name: tmp, mountPath: /tmp}
  {{- if .Values.kafka.tls.caSecret }}
  - {name: kafka-ca, mountPath: /etc/event-bridge/kafka-ca, readOnly: true}
  {{- end }}
  {{- if .Values.kafka.tls.clientSecret }}
  - {name: kafka-client, mountPath: /etc/event-bridge/kafka-client, readOnly: true}
  {{- end }}
{{- end -}}

{{- define "event-bridge.volumes" -}}
volumes:
  - name: tmp
    emptyDir: {}
  {{- if .Values.kafka.tls.caSecret }}
  - name: kafka-ca
    secret: {secretName: {{ .Values.kafka.tls.caSecret }}}
  {{- end }}
  {{- if .Values.kafka.tls.clientSecret }}
  - name: kafka-client
    secret: {secretName: {{ .Values.kafka.tls.clientSecret }}}
  {{- end }}
{{- end -}}

{{- define "event-bridge.podSpecCommon" -}}
serviceAccountName: {{ include "event-bridge.serviceAccountName" . }}
automountServiceAccountToken: false
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
