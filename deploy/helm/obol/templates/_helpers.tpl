{{- define "obol.name" -}}{{ .Chart.Name }}{{- end -}}

{{- define "obol.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}{{ .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else -}}{{ printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "obol.labels" -}}
app.kubernetes.io/name: {{ include "obol.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "obol.selector" -}}
app.kubernetes.io/name: {{ include "obol.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "obol.secretName" -}}
{{- if .Values.existingSecret -}}{{ .Values.existingSecret }}{{- else -}}{{ include "obol.fullname" . }}{{- end -}}
{{- end -}}

{{/* The seconds of a duration such as 5s, 2m or 1m30s (whole seconds). */}}
{{- define "obol.seconds" -}}
{{- $d := . | toString -}}
{{- $total := 0 -}}
{{- range $part := regexFindAll "[0-9]+[hms]" $d -1 -}}
{{- $n := trimSuffix "h" (trimSuffix "m" (trimSuffix "s" $part)) | int -}}
{{- if hasSuffix "h" $part -}}{{- $total = add $total (mul $n 3600) -}}
{{- else if hasSuffix "m" $part -}}{{- $total = add $total (mul $n 60) -}}
{{- else -}}{{- $total = add $total $n -}}{{- end -}}
{{- end -}}
{{- $total -}}
{{- end -}}

{{/* obol's configuration: the values' config with what the chart sets. */}}
{{- define "obol.config" -}}
{{- $c := deepCopy .Values.config -}}
{{- $_ := set $c "listen" "0.0.0.0:8080" -}}
{{- $_ := set $c "data_dir" "/data" -}}
{{- $_ := set $c "shutdown_drain" .Values.shutdownDrain -}}
{{- $_ := set $c "shutdown_grace" .Values.shutdownGrace -}}
{{- $_ := set $c "redis" (merge (dict "url" "${REDIS_URL:-}" "replicas" .Values.replicaCount) (default dict $c.redis)) -}}
{{- $_ := set $c "postgres" (merge (dict "url" "${POSTGRES_URL:-}") (default dict $c.postgres)) -}}
{{- toYaml $c -}}
{{- end -}}
