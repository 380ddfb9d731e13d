{{/* Names and labels shared by the templates. */}}

{{- define "treadle.fullname" -}}
{{- if contains "treadle" .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-treadle" .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "treadle.labels" -}}
app.kubernetes.io/name: treadle
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: treadle
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "treadle.selector" -}}
app.kubernetes.io/name: treadle
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "treadle.serviceAccount" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "treadle.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "treadle.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "treadle.redisSecret" -}}
{{- default (printf "%s-redis" (include "treadle.fullname" .)) .Values.redis.existingSecret -}}
{{- end -}}

{{- define "treadle.sidecar" -}}
{{- and .Values.redis.sidecar.enabled (not .Values.redis.externalUrl) -}}
{{- end -}}

{{/* The restricted Pod Security Standards profile, for every container. */}}
{{- define "treadle.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}
