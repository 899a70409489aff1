{{/* The chart's name, or nameOverride. */}}
{{- define "jobtrace.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The resources' name: fullnameOverride, or <release>-<chart> (just <release> when it holds the chart's name). */}}
{{- define "jobtrace.fullname" -}}
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

{{- define "jobtrace.selectorLabels" -}}
app.kubernetes.io/name: {{ include "jobtrace.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "jobtrace.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "jobtrace.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "jobtrace.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "jobtrace.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The user name the apiserver knows jobtrace's ServiceAccount by. */}}
{{- define "jobtrace.serviceAccountUser" -}}
{{- printf "system:serviceaccount:%s:%s" .Release.Namespace (include "jobtrace.serviceAccountName" .) }}
{{- end }}

{{/*
The labels and annotations jobtrace writes on Jobs, pod templates and pods, as CEL lists for the
admission policies: src/core/names.rs's WRITTEN_LABELS and WRITTEN_ANNOTATIONS (a chart test keeps
them equal).
*/}}
{{- define "jobtrace.writtenLabels" -}}
['jobtrace.dev/traced', 'jobtrace.dev/policy']
{{- end }}

{{- define "jobtrace.writtenAnnotations" -}}
['jobtrace.dev/trace-id', 'jobtrace.dev/span-id', 'jobtrace.dev/parent-span-id', 'jobtrace.dev/trace-flags', 'jobtrace.dev/origin', 'jobtrace.dev/link', 'jobtrace.dev/job-labels', 'jobtrace.dev/policy-overridden', 'jobtrace.dev/created-suspended', 'jobtrace.dev/admitted-at', 'jobtrace.dev/admission-tag', 'jobtrace.dev/exported']
{{- end }}

{{/*
Whether any Job may be held for export: by the chart's default, or by a JobTracePolicy (read when
policy.watchPolicies is on). The uninstall hook then releases every held Job.
*/}}
{{- define "jobtrace.mayHold" -}}
{{- if or .Values.policy.holdForExport .Values.policy.watchPolicies }}true{{ end }}
{{- end }}

{{/* The Secret holding the serving certificate and the CA bundle the apiserver trusts. */}}
{{- define "jobtrace.tlsSecret" -}}
{{- printf "%s-tls" (include "jobtrace.fullname" .) }}
{{- end }}

{{/* Self-managed: the Secret holding the CA's private key, apart from the serving certificate
(jobtrace derives its name from the serving Secret's: `<cert-secret>-ca`). */}}
{{- define "jobtrace.caSecret" -}}
{{- printf "%s-ca" (include "jobtrace.tlsSecret" .) }}
{{- end }}

{{/* The namespaces the controller reads Jobs and pods in, as a namespaceSelector's
matchExpressions: controller.watchNamespace, or (nothing rendered) every namespace. */}}
{{- define "jobtrace.watchedNamespaces" -}}
{{- with .Values.controller.watchNamespace }}
matchExpressions:
  - key: kubernetes.io/metadata.name
    operator: In
    values: [{{ . | quote }}]
{{- end }}
{{- end }}

{{/* The names the serving certificate is valid for: the Service's in-cluster DNS names. */}}
{{- define "jobtrace.dnsNames" -}}
{{- $svc := include "jobtrace.fullname" . }}
{{- printf "%s.%s.svc,%s.%s.svc.cluster.local" $svc .Release.Namespace $svc .Release.Namespace }}
{{- end }}

{{/*
OTEL_RESOURCE_ATTRIBUTES from a map: key=value pairs, comma-separated, in the keys' order, with
`%` (first), `,`, `=` and spaces percent-encoded in keys and values, as the OpenTelemetry
specification has it.
*/}}
{{- define "jobtrace.resourceAttributes" -}}
{{- $pairs := list }}
{{- range $key, $value := . }}
{{- $pairs = append $pairs (printf "%s=%s" (include "jobtrace.percentEncode" $key) (include "jobtrace.percentEncode" (toString $value))) }}
{{- end }}
{{- join "," $pairs }}
{{- end }}

{{- define "jobtrace.percentEncode" -}}
{{- . | replace "%" "%25" | replace "," "%2C" | replace "=" "%3D" | replace " " "%20" }}
{{- end }}
