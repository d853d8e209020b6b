{{/* Names, labels and the addresses every part of the chart agrees on. */}}

{{- define "mailraft.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "mailraft.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else if contains (include "mailraft.name" .) .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "mailraft.name" .) | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "mailraft.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mailraft.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "mailraft.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "mailraft.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mailraft
{{- end -}}

{{/* The image of every role (one image runs storage, frontend and admin). */}}
{{- define "mailraft.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/* Storage StatefulSets: the seed (node 1, bootstraps) and the members (nodes 2..N, added by the join Job). */}}
{{- define "mailraft.seedName" -}}{{ include "mailraft.fullname" . }}-seed{{- end -}}
{{- define "mailraft.membersName" -}}{{ include "mailraft.fullname" . }}-storage{{- end -}}
{{- define "mailraft.peersService" -}}{{ include "mailraft.fullname" . }}-peers{{- end -}}

{{/* Pod name of storage node `id`: `<fullname>-seed-1` or `<fullname>-storage-<id>` (ordinal = node id). */}}
{{- define "mailraft.nodePod" -}}
{{- $root := index . 0 -}}{{- $id := index . 1 | int -}}
{{- if eq $id 1 -}}{{ include "mailraft.seedName" $root }}-1{{- else -}}{{ include "mailraft.membersName" $root }}-{{ $id }}{{- end -}}
{{- end -}}

{{/* Stable DNS name of storage node `id` through the headless peers Service. */}}
{{- define "mailraft.nodeHost" -}}
{{- $root := index . 0 -}}
{{- printf "%s.%s.%s.svc.%s" (include "mailraft.nodePod" .) (include "mailraft.peersService" $root) $root.Release.Namespace $root.Values.clusterDomain -}}
{{- end -}}

{{- define "mailraft.nodePeerUrl" -}}
{{- $root := index . 0 -}}https://{{ include "mailraft.nodeHost" . }}:{{ $root.Values.ports.grpc }}
{{- end -}}

{{- define "mailraft.nodeAdminUrl" -}}
{{- $root := index . 0 -}}https://{{ include "mailraft.nodeHost" . }}:{{ $root.Values.ports.admin }}
{{- end -}}

{{/* Every storage node's peer URL, comma-separated (MAILRAFT_STORAGE__ENDPOINTS takes a list). */}}
{{- define "mailraft.storageEndpoints" -}}
{{- $root := . -}}
{{- $urls := list -}}
{{- range $i := until (int .Values.storage.replicas) -}}
{{- $urls = append $urls (include "mailraft.nodePeerUrl" (list $root (add1 $i))) -}}
{{- end -}}
{{- join "," $urls -}}
{{- end -}}

{{/* Secret names of the gRPC mTLS material. */}}
{{- define "mailraft.nodeSecret" -}}
{{- $root := index . 0 -}}{{ include "mailraft.fullname" $root }}-node-{{ index . 1 }}-tls
{{- end -}}
{{- define "mailraft.frontendSecret" -}}
{{- if .Values.tls.grpc.certManager.enabled -}}{{ include "mailraft.fullname" . }}-frontend-tls{{- else -}}{{ required "tls.grpc.existingSecrets.frontend is required when tls.grpc.certManager.enabled is false" .Values.tls.grpc.existingSecrets.frontend }}{{- end -}}
{{- end -}}
{{- define "mailraft.operatorSecret" -}}
{{- if .Values.tls.grpc.certManager.enabled -}}{{ include "mailraft.fullname" . }}-operator-tls{{- else -}}{{ required "tls.grpc.existingSecrets.operator is required when tls.grpc.certManager.enabled is false" .Values.tls.grpc.existingSecrets.operator }}{{- end -}}
{{- end -}}
{{- define "mailraft.imapSecret" -}}
{{- if .Values.tls.imap.certManager.enabled -}}{{ include "mailraft.fullname" . }}-imap-tls{{- else -}}{{ .Values.tls.imap.secretName }}{{- end -}}
{{- end -}}

{{/* The issuer of the gRPC certificates: the given one, or the CA Issuer this chart creates. */}}
{{- define "mailraft.grpcIssuerRef" -}}
{{- if .Values.tls.grpc.certManager.issuerRef.name -}}
{{ toYaml .Values.tls.grpc.certManager.issuerRef }}
{{- else -}}
name: {{ include "mailraft.fullname" . }}-ca
kind: Issuer
group: cert-manager.io
{{- end -}}
{{- end -}}

{{/* The container securityContext shared by every Mailraft container (the image runs as a non-root user). */}}
{{- define "mailraft.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* A volume of one process's gRPC material, laid out as `mailraft certs` does: ca.pem, <stem>.pem, <stem>-key.pem. */}}
{{- define "mailraft.leafVolume" -}}
{{- $root := index . 0 -}}{{- $secret := index . 1 -}}{{- $stem := index . 2 -}}
projected:
  defaultMode: 0440
  sources:
    - secret:
        name: {{ $secret }}
        items:
{{- if $root.Values.tls.grpc.certManager.enabled }}
          - {key: ca.crt, path: ca.pem}
          - {key: tls.crt, path: {{ $stem }}.pem}
          - {key: tls.key, path: {{ $stem }}-key.pem}
{{- else }}
          - {key: ca.pem, path: ca.pem}
          - {key: {{ $stem }}.pem, path: {{ $stem }}.pem}
          - {key: {{ $stem }}-key.pem, path: {{ $stem }}-key.pem}
{{- end }}
{{- end -}}
