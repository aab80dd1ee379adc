{{/* Chart name. */}}
{{- define "dataclay.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Release-qualified name for the operator's objects. */}}
{{- define "dataclay.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- printf "%s-operator" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s-operator" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "dataclay.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dataclay.name" . }}-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "dataclay.labels" -}}
{{ include "dataclay.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: dataclay
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "dataclay.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "dataclay.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "dataclay.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/*
What the operator does in a namespace it manages, and nothing more: read DataClays, write their
status, own their children (server-side apply needs create + patch), list pods for status, post
Events. dataclays/finalizers "update" is what blockOwnerDeletion on owner references requires.
*/}}
{{- define "dataclay.workloadRules" -}}
- apiGroups: ["dataclay.bsc.es"]
  resources: ["dataclays"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["dataclay.bsc.es"]
  resources: ["dataclays/status"]
  verbs: ["get", "patch"]
- apiGroups: ["dataclay.bsc.es"]
  resources: ["dataclays/finalizers"]
  verbs: ["update"]
- apiGroups: ["apps"]
  resources: ["statefulsets"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: [""]
  resources: ["services", "configmaps"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end -}}
