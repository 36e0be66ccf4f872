{{- define "vpc-ipam.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "vpc-ipam.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 55 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 55 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "vpc-ipam.labels" -}}
app.kubernetes.io/name: {{ include "vpc-ipam.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "vpc-ipam.selector" -}}
app.kubernetes.io/name: {{ include "vpc-ipam.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "vpc-ipam.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "vpc-ipam.daemonServiceAccount" -}}
{{- .Values.serviceAccount.daemon.name | default (printf "%s-daemon" (include "vpc-ipam.fullname" .)) -}}
{{- end -}}

{{- define "vpc-ipam.janitorServiceAccount" -}}
{{- .Values.serviceAccount.janitor.name | default (printf "%s-janitor" (include "vpc-ipam.fullname" .)) -}}
{{- end -}}

{{/* Env entries from a map, skipping empty values (empty = let the program's default apply). */}}
{{- define "vpc-ipam.envFromMap" -}}
{{- range $name, $value := . }}
{{- if ne (toString $value) "" }}
- name: {{ $name }}
  value: {{ toString $value | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "vpc-ipam.validate" -}}
{{- if not .Values.clusterName -}}
{{- fail "clusterName is required: the name written on (and used to find) the interfaces this cluster creates" -}}
{{- end -}}
{{- if not (has .Values.cloud (list "aws" "azure")) -}}
{{- fail (printf "cloud=%q is invalid; accepted: aws | azure" .Values.cloud) -}}
{{- end -}}
{{- if not (has .Values.cni.mode (list "veth" "ipvlan")) -}}
{{- fail (printf "cni.mode=%q is invalid; accepted: veth | ipvlan" .Values.cni.mode) -}}
{{- end -}}
{{- if and .Values.serviceMonitor.enabled (eq (toString .Values.daemon.env.METRICS_ADDRESS) "127.0.0.1") -}}
{{- fail "serviceMonitor.enabled needs daemon.env.METRICS_ADDRESS reachable from Prometheus (e.g. 0.0.0.0); 127.0.0.1 cannot be scraped" -}}
{{- end -}}
{{- if and .Values.serviceMonitor.enabled (eq (toString .Values.daemon.env.METRICS_PORT) "0") -}}
{{- fail "serviceMonitor.enabled needs daemon.env.METRICS_PORT > 0" -}}
{{- end -}}
{{- if and .Values.janitor.enabled (eq .Values.cloud "aws") (not .Values.janitor.env.AWS_REGION) -}}
{{- fail "janitor.env.AWS_REGION is required on AWS (or set janitor.enabled=false)" -}}
{{- end -}}
{{- end -}}
