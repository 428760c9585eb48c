{{/* Labels every object of the release carries. */}}
{{- define "agentwatch.labels" -}}
app.kubernetes.io/name: agentwatch
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "agentwatch.selector" -}}
app.kubernetes.io/name: agentwatch
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "agentwatch.fullname" -}}
{{- if eq .Release.Name "agentwatch" -}}agentwatch{{- else -}}{{ printf "%s-agentwatch" .Release.Name | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- end -}}
