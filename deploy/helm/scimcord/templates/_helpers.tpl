{{/* Chart name. */}}
{{- define "scimcord.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name: the prefix of every resource name. */}}
{{- define "scimcord.fullname" -}}
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

{{/* Labels on every resource. */}}
{{- define "scimcord.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "scimcord.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: scimcord
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of the release. */}}
{{- define "scimcord.selectorLabels" -}}
app.kubernetes.io/name: {{ include "scimcord.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels of one component: (dict "ctx" $ "component" "ingest"). */}}
{{- define "scimcord.componentLabels" -}}
{{ include "scimcord.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Selector labels of one component. */}}
{{- define "scimcord.componentSelectorLabels" -}}
{{ include "scimcord.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* ServiceAccount name. */}}
{{- define "scimcord.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "scimcord.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Image of one component: (dict "ctx" $ "component" "ingest"). */}}
{{- define "scimcord.image" -}}
{{- $v := .ctx.Values -}}
{{- $svc := index $v .component -}}
{{- $repo := $svc.image.repository -}}
{{- if not $repo -}}
{{- $repo = printf "%s-%s" $v.image.repository .component -}}
{{- if $v.image.registry -}}
{{- $repo = printf "%s/%s" $v.image.registry $repo -}}
{{- end -}}
{{- end -}}
{{- $tag := $svc.image.tag | default $v.image.tag | default .ctx.Chart.AppVersion -}}
{{- printf "%s:%s" $repo $tag -}}
{{- end -}}

{{/* Names of the Secrets and ConfigMaps (existing or created). */}}
{{- define "scimcord.tenantsSecret" -}}
{{- .Values.tenants.existingSecret | default (printf "%s-tenants" (include "scimcord.fullname" .)) -}}
{{- end -}}
{{- define "scimcord.discordSecret" -}}
{{- .Values.discord.existingSecret | default (printf "%s-discord" (include "scimcord.fullname" .)) -}}
{{- end -}}
{{- define "scimcord.adminSecret" -}}
{{- .Values.admin.existingSecret | default (printf "%s-admin" (include "scimcord.fullname" .)) -}}
{{- end -}}
{{- define "scimcord.mappingSecret" -}}
{{- .Values.mapping.auth.existingSecret | default (printf "%s-mapping-token" (include "scimcord.fullname" .)) -}}
{{- end -}}

{{/* The mapping service token for the chart-made Secret: mapping.auth.token,
else the token of the Secret already in the cluster, else a new random one.
Made once per render (kept in .Values) so every template sees the same. */}}
{{- define "scimcord.mappingToken" -}}
{{- $a := .Values.mapping.auth -}}
{{- if $a.token -}}
{{- $a.token -}}
{{- else -}}
{{- if not (hasKey $a "generatedToken") -}}
{{- $tok := "" -}}
{{- $old := lookup "v1" "Secret" .Release.Namespace (include "scimcord.mappingSecret" .) -}}
{{- if and $old $old.data (hasKey $old.data $a.key) -}}
{{- $tok = index $old.data $a.key | b64dec -}}
{{- else -}}
{{- $tok = randAlphaNum 48 -}}
{{- end -}}
{{- $_ := set $a "generatedToken" $tok -}}
{{- end -}}
{{- index $a "generatedToken" -}}
{{- end -}}
{{- end -}}

{{/* The env var that hands the mapping token to a container. */}}
{{- define "scimcord.mappingTokenEnv" -}}
- name: SCIMCORD_MAPPING_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "scimcord.mappingSecret" . }}
      key: {{ .Values.mapping.auth.key }}
{{- end -}}

{{- define "scimcord.rulesConfigMap" -}}
{{- .Values.rules.existingConfigMap | default (printf "%s-rules" (include "scimcord.fullname" .)) -}}
{{- end -}}

{{/* The tenant file rendered from tenants.items. */}}
{{- define "scimcord.tenantsFile" -}}
{{ toYaml (dict "tenants" .Values.tenants.items) }}
{{- end -}}

{{/* The rules file rendered from rules.content. */}}
{{- define "scimcord.rulesFile" -}}
{{- if kindIs "string" .Values.rules.content -}}
{{ .Values.rules.content }}
{{- else -}}
{{ toYaml .Values.rules.content }}
{{- end -}}
{{- end -}}

{{/* Address of the mapping service (SCIMCORD_MAPPING_ADDR of applier and ingest): applier.mappingAddr, else this release's mapping Service. */}}
{{- define "scimcord.mappingAddr" -}}
{{- .Values.applier.mappingAddr | default (printf "%s-mapping:%v" (include "scimcord.fullname" .) .Values.mapping.service.port) -}}
{{- end -}}

{{/* Effective replicas of a component: (dict "ctx" $ "component" "ingest"). */}}
{{- define "scimcord.replicas" -}}
{{- $svc := index .ctx.Values .component -}}
{{- if and (hasKey $svc "autoscaling") $svc.autoscaling.enabled -}}
{{- $svc.autoscaling.minReplicas -}}
{{- else -}}
{{- $svc.replicas -}}
{{- end -}}
{{- end -}}

{{/* Environment shared by the three services. */}}
{{- define "scimcord.commonEnv" -}}
- name: NATS_URL
  value: {{ .Values.nats.url | quote }}
- name: SCIMCORD_NATS_REPLICAS
  value: {{ .Values.nats.replicas | quote }}
{{- if .Values.nats.credentials.existingSecret }}
- name: NATS_CREDS
  value: /etc/scimcord/nats/{{ .Values.nats.credentials.key }}
{{- end }}
- name: SCIMCORD_LOG_LEVEL
  value: {{ .Values.observability.logLevel | quote }}
- name: SCIMCORD_METRICS_ADDR
  value: {{ printf ":%v" .Values.observability.metricsPort | quote }}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: OTEL_RESOURCE_ATTRIBUTES
  value: "k8s.pod.name=$(POD_NAME),k8s.namespace.name={{ .Release.Namespace }}"
{{- with .Values.observability.otlp }}
{{- if .enabled }}
- name: OTEL_TRACES_EXPORTER
  value: otlp
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ .endpoint | quote }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: {{ .protocol | quote }}
- name: OTEL_EXPORTER_OTLP_INSECURE
  value: {{ .insecure | quote }}
- name: OTEL_TRACES_SAMPLER
  value: {{ .sampler | quote }}
{{- if .samplerArg }}
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ .samplerArg | quote }}
{{- end }}
{{- else }}
- name: OTEL_TRACES_EXPORTER
  value: none
{{- end }}
{{- end }}
{{- end -}}

{{/* Volumes shared by the three services: /tmp and the NATS credentials. */}}
{{- define "scimcord.commonVolumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- if .Values.nats.credentials.existingSecret }}
- name: nats-creds
  secret:
    secretName: {{ .Values.nats.credentials.existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ .Values.nats.credentials.key }}
        path: {{ .Values.nats.credentials.key }}
{{- end }}
{{- end -}}

{{- define "scimcord.commonVolumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if .Values.nats.credentials.existingSecret }}
- name: nats-creds
  mountPath: /etc/scimcord/nats
  readOnly: true
{{- end }}
{{- end -}}

{{/* Pod spec parts shared by the three services: (dict "ctx" $ "component" "ingest"). */}}
{{- define "scimcord.podCommon" -}}
{{- $v := .ctx.Values -}}
{{- $svc := index $v .component -}}
serviceAccountName: {{ include "scimcord.serviceAccountName" .ctx }}
automountServiceAccountToken: {{ $v.serviceAccount.automountToken }}
enableServiceLinks: false
securityContext:
  {{- toYaml $v.podSecurityContext | nindent 2 }}
terminationGracePeriodSeconds: {{ $svc.terminationGracePeriodSeconds }}
{{- with $v.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with $v.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $svc.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $svc.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $svc.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if $svc.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml $svc.topologySpreadConstraints | nindent 2 }}
{{- else if $v.topologySpread.enabled }}
topologySpreadConstraints:
  - maxSkew: {{ $v.topologySpread.maxSkew }}
    topologyKey: topology.kubernetes.io/zone
    whenUnsatisfiable: {{ $v.topologySpread.zoneWhenUnsatisfiable }}
    labelSelector:
      matchLabels:
        {{- include "scimcord.componentSelectorLabels" . | nindent 8 }}
    matchLabelKeys: [pod-template-hash]
  - maxSkew: {{ $v.topologySpread.maxSkew }}
    topologyKey: kubernetes.io/hostname
    whenUnsatisfiable: {{ $v.topologySpread.nodeWhenUnsatisfiable }}
    labelSelector:
      matchLabels:
        {{- include "scimcord.componentSelectorLabels" . | nindent 8 }}
    matchLabelKeys: [pod-template-hash]
{{- end }}
{{- end -}}

{{/* Pod metadata labels and annotations: (dict "ctx" $ "component" "ingest" "annotations" dict). */}}
{{- define "scimcord.podMetadata" -}}
labels:
  {{- include "scimcord.componentLabels" . | nindent 2 }}
  {{- with .ctx.Values.podLabels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
annotations:
  {{- range $k, $val := .annotations }}
  {{ $k }}: {{ $val | quote }}
  {{- end }}
  {{- with .ctx.Values.podAnnotations }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end -}}

{{/* Validation of values that the schema cannot express; fails the render with a clear message. */}}
{{- define "scimcord.validate" -}}
{{- $v := .Values -}}
{{- if not $v.nats.url -}}
{{- fail "nats.url is required: the URL of your NATS JetStream servers (e.g. nats://nats:4222)" -}}
{{- end -}}
{{- if and $v.tenants.existingSecret $v.tenants.items -}}
{{- fail "tenants: set either tenants.existingSecret or tenants.items, not both" -}}
{{- end -}}
{{- $tenantIDs := dict -}}
{{- range $i, $t := $v.tenants.items -}}
{{- if not (regexMatch "^[A-Za-z0-9_-]{1,64}$" (toString $t.id)) -}}
{{- fail (printf "tenants.items[%d].id must match [A-Za-z0-9_-]{1,64}" $i) -}}
{{- end -}}
{{- if hasKey $tenantIDs (toString $t.id) -}}
{{- fail (printf "tenants.items[%d].id %q is used twice" $i $t.id) -}}
{{- end -}}
{{- $_ := set $tenantIDs (toString $t.id) true -}}
{{- if not $t.token_sha256 -}}
{{- fail (printf "tenants.items[%d] (%s): token_sha256 needs at least one SHA-256 hash of a SCIM token" $i $t.id) -}}
{{- end -}}
{{- range $h := $t.token_sha256 -}}
{{- if not (regexMatch "^[0-9a-fA-F]{64}$" (toString $h)) -}}
{{- fail (printf "tenants.items[%d] (%s): token_sha256 holds a value that is not 64 hex digits — put the SHA-256 of the token here, never the token itself" $i $t.id) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and $v.discord.existingSecret $v.discord.botToken -}}
{{- fail "discord: set either discord.existingSecret or discord.botToken, not both" -}}
{{- end -}}
{{- if and $v.admin.enabled $v.admin.existingSecret $v.admin.token -}}
{{- fail "admin: set either admin.existingSecret or admin.token, not both" -}}
{{- end -}}
{{- if and $v.admin.enabled (not $v.admin.existingSecret) (not $v.admin.token) -}}
{{- fail "admin.enabled needs admin.existingSecret or admin.token" -}}
{{- end -}}
{{- if and $v.mapping.auth.existingSecret $v.mapping.auth.token -}}
{{- fail "mapping.auth: set either mapping.auth.existingSecret or mapping.auth.token, not both" -}}
{{- end -}}
{{- if and $v.mapping.auth.token (lt (len $v.mapping.auth.token) 16) -}}
{{- fail "mapping.auth.token must be at least 16 characters (mapping refuses a shorter one and would not start); make one with: openssl rand -base64 32" -}}
{{- end -}}
{{- if and $v.admin.token (lt (len $v.admin.token) 16) -}}
{{- fail "admin.token must be at least 16 characters (ingest refuses a shorter one and would not start); make one with: openssl rand -base64 32" -}}
{{- end -}}
{{- if and $v.rules.existingConfigMap (not (empty $v.rules.content)) -}}
{{- fail "rules: set either rules.existingConfigMap or rules.content, not both" -}}
{{- end -}}
{{- if and $v.observability.otlp.enabled (not $v.observability.otlp.endpoint) -}}
{{- fail "observability.otlp.enabled needs observability.otlp.endpoint" -}}
{{- end -}}
{{- if and $v.ingress.enabled $v.httpRoute.enabled -}}
{{- fail "expose the SCIM endpoint with ingress or httpRoute, not both" -}}
{{- end -}}
{{- if and $v.ingress.enabled (not $v.ingress.host) -}}
{{- fail "ingress.enabled needs ingress.host (the host name the IdP calls)" -}}
{{- end -}}
{{- if and $v.httpRoute.enabled (not $v.httpRoute.parentRefs) -}}
{{- fail "httpRoute.enabled needs httpRoute.parentRefs (the Gateway with the HTTPS listener)" -}}
{{- end -}}
{{- range $c := list "ingest" "mapping" -}}
{{- $a := (index $v $c).autoscaling -}}
{{- if and $a.enabled (lt (int $a.maxReplicas) (int $a.minReplicas)) -}}
{{- fail (printf "%s.autoscaling.maxReplicas (%v) is below minReplicas (%v)" $c $a.maxReplicas $a.minReplicas) -}}
{{- end -}}
{{- end -}}
{{- if lt (int $v.discord.globalRps) (int $v.applier.replicas) -}}
{{- fail (printf "discord.globalRps (%v) must be at least applier.replicas (%v): every replica needs at least 1 request/s" $v.discord.globalRps $v.applier.replicas) -}}
{{- end -}}
{{- if and $v.tests.scimToken.existingSecret $v.tests.scimToken.value -}}
{{- fail "tests.scimToken: set either existingSecret or value, not both" -}}
{{- end -}}
{{- end -}}
