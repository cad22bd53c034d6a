{{- define "routeway.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "routeway.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "routeway.labels" -}}
{{ include "routeway.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "routeway.policiesConfigMap" -}}
{{- .Values.policies.existingConfigMap | default (printf "%s-policies" (include "routeway.fullname" .)) -}}
{{- end -}}

{{- /* Its own name label: the gateway's Service, PDB and HPA must never select the Redis pod. */ -}}
{{- define "routeway.redisSelectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}-redis
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: redis
{{- end -}}

{{- define "routeway.redisEnv" -}}
{{- if .Values.redis.enabled }}
- name: ROUTEWAY_REDIS_URL
  value: {{ printf "redis://%s-redis:6379/0" (include "routeway.fullname" .) | quote }}
{{- else if .Values.redis.existingSecret }}
- name: ROUTEWAY_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.existingSecret }}
      key: {{ .Values.redis.existingSecretKey }}
{{- else if .Values.redis.url }}
- name: ROUTEWAY_REDIS_URL
  value: {{ .Values.redis.url | quote }}
{{- end }}
{{- end -}}
