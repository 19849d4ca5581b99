{{/* Names and labels. */}}
{{- define "xray-daemon.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "xray-daemon.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "xray-daemon.selectorLabels" -}}
app.kubernetes.io/name: {{ include "xray-daemon.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "xray-daemon.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "xray-daemon.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "xray-daemon.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "xray-daemon.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "xray-daemon.serviceName" -}}
{{- default (include "xray-daemon.fullname" .) .Values.service.name -}}
{{- end -}}

{{/* registry/repository, with global.imageRegistry before image.registry; none: the repository alone. */}}
{{- define "xray-daemon.repository" -}}
{{- $registry := default .Values.image.registry (dig "imageRegistry" "" (.Values.global | default dict)) -}}
{{- if $registry -}}
{{- printf "%s/%s" (trimSuffix "/" $registry) .Values.image.repository -}}
{{- else -}}
{{- .Values.image.repository -}}
{{- end -}}
{{- end -}}

{{- define "xray-daemon.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" (include "xray-daemon.repository" .) .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" (include "xray-daemon.repository" .) (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The daemon's TCP port as another pod reaches it: through the Service, else the node's IP. */}}
{{- define "xray-daemon.testTarget" -}}
{{- if .Values.service.enabled -}}
{{- printf "%s.%s.svc:%v" (include "xray-daemon.serviceName" .) .Release.Namespace .Values.service.port -}}
{{- else if .Values.hostNetwork -}}
{{- printf "$(HOST_IP):%d" (include "xray-daemon.port" .Values.daemon.tcpAddress | int) -}}
{{- else -}}
{{- printf "$(HOST_IP):%v" .Values.hostPorts.tcp -}}
{{- end -}}
{{- end -}}

{{/* Where the daemon's spool is mounted in the container. */}}
{{- define "xray-daemon.spoolDir" -}}
/var/lib/xray-daemon/spool
{{- end -}}

{{/* The port of a HOST:PORT address, as an integer. */}}
{{- define "xray-daemon.port" -}}
{{- splitList ":" . | last | int -}}
{{- end -}}

{{/* An env value as the daemon should read it: whole numbers without an exponent. */}}
{{- define "xray-daemon.envValue" -}}
{{- if kindIs "float64" . -}}
{{- if eq (float64 (int64 .)) . }}{{ int64 . }}{{ else }}{{ . }}{{ end -}}
{{- else -}}
{{- . -}}
{{- end -}}
{{- end -}}

{{/* daemon.shutdownTimeout in seconds (the schema allows N, "N", "Nms", "Ns", "Nm"). */}}
{{- define "xray-daemon.shutdownSeconds" -}}
{{- $v := .Values.daemon.shutdownTimeout -}}
{{- if or (kindIs "invalid" $v) (eq (toString $v) "") -}}
5
{{- else if not (kindIs "string" $v) -}}
{{- $v -}}
{{- else if hasSuffix "ms" $v -}}
{{- divf (trimSuffix "ms" $v) 1000 -}}
{{- else if hasSuffix "m" $v -}}
{{- mulf (trimSuffix "m" $v) 60 -}}
{{- else -}}
{{- trimSuffix "s" $v | float64 -}}
{{- end -}}
{{- end -}}

{{/* The cfg.yaml file, from config.content or config.settings. */}}
{{- define "xray-daemon.configFile" -}}
{{- if .Values.config.content -}}
{{- .Values.config.content -}}
{{- else -}}
{{- toYaml (merge (dict) .Values.config.settings (dict "Version" 2)) -}}
{{- end -}}
{{- end -}}

{{/* Settings the chart cannot render into a working daemon. */}}
{{- define "xray-daemon.checks" -}}
{{- $grace := float64 .Values.terminationGracePeriodSeconds -}}
{{- $shutdown := include "xray-daemon.shutdownSeconds" . | float64 -}}
{{- if le $grace $shutdown -}}
{{- fail (printf "terminationGracePeriodSeconds (%v) must be longer than daemon.shutdownTimeout (%vs): the kubelet would kill the daemon before it has sent what it holds" .Values.terminationGracePeriodSeconds $shutdown) -}}
{{- end -}}
{{- if and .Values.config.enabled (not .Values.config.content) (not .Values.config.settings) -}}
{{- fail "config.enabled needs config.content or config.settings" -}}
{{- end -}}
{{- if and .Values.test.enabled (not .Values.service.enabled) (not .Values.hostNetwork) (not .Values.hostPorts.enabled) -}}
{{- fail "test.enabled needs service.enabled, hostPorts.enabled or hostNetwork: the test pod reaches the daemon through one of them" -}}
{{- end -}}
{{- if and .Values.spool.enabled (eq .Values.spool.volume "hostPath") (not .Values.spool.hostPath) -}}
{{- fail "spool.volume hostPath needs spool.hostPath, a directory on the node" -}}
{{- end -}}
{{- if and .Values.serviceMonitor.enabled (not .Values.service.enabled) -}}
{{- fail "serviceMonitor.enabled needs service.enabled: the ServiceMonitor scrapes the Service" -}}
{{- end -}}
{{- $udp := include "xray-daemon.port" .Values.daemon.udpAddress | int -}}
{{- $tcp := include "xray-daemon.port" .Values.daemon.tcpAddress | int -}}
{{- if and .Values.hostNetwork .Values.hostPorts.enabled (or (ne (int .Values.hostPorts.udp) $udp) (ne (int .Values.hostPorts.tcp) $tcp)) -}}
{{- fail (printf "with hostNetwork the host ports are the container ports: set hostPorts.udp/tcp to %d/%d or change the ports in daemon.udpAddress/tcpAddress" $udp $tcp) -}}
{{- end -}}
{{- if .Values.otlp.enabled -}}
{{- $otlp := int .Values.otlp.port -}}
{{- if eq $otlp $tcp -}}
{{- fail (printf "otlp.port (%d) is the TCP port of daemon.tcpAddress: the OTLP listener needs a port of its own (the TCP port takes OTLP/HTTP anyway)" $otlp) -}}
{{- end -}}
{{- if and .Values.hostPorts.enabled (not .Values.hostNetwork) (eq $otlp (int .Values.hostPorts.tcp)) -}}
{{- fail (printf "otlp.port (%d) is also hostPorts.tcp: the node port would be published twice" $otlp) -}}
{{- end -}}
{{- end -}}
{{- if .Values.otlp.grpc.enabled -}}
{{- $grpc := int .Values.otlp.grpc.port -}}
{{- if eq $grpc $tcp -}}
{{- fail (printf "otlp.grpc.port (%d) is the TCP port of daemon.tcpAddress: the OTLP/gRPC listener needs a port of its own" $grpc) -}}
{{- end -}}
{{- if and .Values.otlp.enabled (eq $grpc (int .Values.otlp.port)) -}}
{{- fail (printf "otlp.grpc.port (%d) is also otlp.port: OTLP/gRPC and OTLP/HTTP need a port each" $grpc) -}}
{{- end -}}
{{- if and .Values.hostPorts.enabled (not .Values.hostNetwork) (eq $grpc (int .Values.hostPorts.tcp)) -}}
{{- fail (printf "otlp.grpc.port (%d) is also hostPorts.tcp: the node port would be published twice" $grpc) -}}
{{- end -}}
{{- end -}}
{{- $rolling := dig "rollingUpdate" "maxSurge" 0 .Values.updateStrategy -}}
{{- if and (eq .Values.updateStrategy.type "RollingUpdate") (or .Values.hostNetwork .Values.hostPorts.enabled) (not (has (toString $rolling) (list "0" "0%"))) -}}
{{- fail "updateStrategy.rollingUpdate.maxSurge must be 0 with hostPorts or hostNetwork: the new pod could not bind the port the old one holds" -}}
{{- end -}}
{{- end -}}
