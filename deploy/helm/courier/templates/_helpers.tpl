{{/* The release's full name: the release name, with -courier unless it says courier already. */}}
{{- define "courier.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "courier.headless" -}}
{{- printf "%s-headless" (include "courier.fullname" .) -}}
{{- end -}}

{{- define "courier.secretName" -}}
{{- default (include "courier.fullname" .) .Values.secrets.name -}}
{{- end -}}

{{- define "courier.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "courier.labels" -}}
{{ include "courier.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* http or https, for the admin endpoint's probes. */}}
{{- define "courier.adminScheme" -}}
{{- if .Values.tls.enabled }}HTTPS{{ else }}HTTP{{ end -}}
{{- end -}}

{{/* A listener's certificate and key, from the tls Secret. */}}
{{- define "courier.tlsFiles" -}}
cert_file: /etc/courier-tls/tls.crt
key_file: /etc/courier-tls/tls.key
{{- end -}}
