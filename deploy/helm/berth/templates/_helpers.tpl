{{- define "berth.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "berth.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "berth.labels" -}}
{{ include "berth.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* clustered: shared database and object store, so any number of nodes. */}}
{{- define "berth.clustered" -}}
{{- if and (or .Values.database.url .Values.database.existingSecret) .Values.storage.url -}}true{{- end -}}
{{- end -}}

{{- define "berth.secretName" -}}
{{ include "berth.fullname" . }}
{{- end -}}

{{- define "berth.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not (include "berth.clustered" .)) -}}
{{- fail "replicaCount > 1 needs a shared database and object store: set database.url (or database.existingSecret) and storage.url; the embedded SQLite and filesystem belong to one node" -}}
{{- end -}}
{{- if and .Values.storage.accessKeyID (not .Values.storage.secretAccessKey) -}}
{{- fail "storage.accessKeyID is set without storage.secretAccessKey" -}}
{{- end -}}
{{- end -}}
