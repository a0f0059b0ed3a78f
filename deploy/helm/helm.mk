# Helm chart and container images. Included by the top-level Makefile
# (`include deploy/helm/helm.mk`), which defines TOOLS (= .tools/bin, on PATH).
#
#   make chart   helm lint + helm template of deploy/helm/scimcord for the default
#                values and every ci/*.yaml, then the chart's Go test (strict
#                decoding into the Kubernetes / Prometheus Operator / Gateway API
#                types). Builds the pinned helm from the Go module proxy first.
#   make image   one image per service from deploy/docker/Dockerfile (needs a
#                Docker engine with BuildKit; IMAGE_REPO and IMAGE_TAG select the name).

HELM_VERSION ?= v4.3.2
HELM         := $(TOOLS)/helm
HELM_STAMP   := $(TOOLS)/.helm-$(HELM_VERSION)
CHART_DIR    := deploy/helm/scimcord
CHART_CI     := $(sort $(wildcard $(CHART_DIR)/ci/*.yaml))

IMAGE_REPO   ?= ghcr.io/scimcord/scimcord
IMAGE_TAG    ?= dev
IMAGE_SERVICES := ingest mapping applier scimcord
DOCKER       ?= docker

# helm is built from source through the Go module proxy (no other download);
# the stamp file rebuilds it when HELM_VERSION changes. About 2.5 minutes, once.
$(HELM_STAMP):
	GOBIN=$(TOOLS) go install helm.sh/helm/v4/cmd/helm@$(HELM_VERSION)
	@rm -f $(TOOLS)/.helm-v* && touch $@

.PHONY: helm
helm: $(HELM_STAMP) ## build the pinned helm into .tools/bin

.PHONY: chart
chart: $(HELM_STAMP) ## helm lint + template of the chart for every value set, then its Go test
	@set -e; home=$$(mktemp -d); trap 'rm -rf "$$home"' EXIT; \
	export HELM_CACHE_HOME=$$home/cache HELM_CONFIG_HOME=$$home/config HELM_DATA_HOME=$$home/data; \
	for f in "" $(CHART_CI); do \
	  name=$${f:-default values}; args=$${f:+-f $$f}; \
	  if ! out=$$($(HELM) lint --strict $(CHART_DIR) $$args 2>&1); then echo "$$out"; echo "chart: helm lint failed for $$name"; exit 1; fi; \
	  if ! out=$$($(HELM) template scimcord $(CHART_DIR) --namespace scimcord $$args 2>&1 >/dev/null); then echo "$$out"; echo "chart: helm template failed for $$name"; exit 1; fi; \
	  echo "chart: lint + template ok: $$name"; \
	done
	SCIMCORD_HELM=$(HELM) go test -count=1 ./deploy/helm/...

.PHONY: image
image: ## build the container images, one per service (needs Docker with BuildKit)
	@set -e; for s in $(IMAGE_SERVICES); do \
	  echo "image: $(IMAGE_REPO)-$$s:$(IMAGE_TAG)"; \
	  DOCKER_BUILDKIT=1 $(DOCKER) build -f deploy/docker/Dockerfile \
	    --build-arg SERVICE=$$s --build-arg VERSION=$(IMAGE_TAG) \
	    -t $(IMAGE_REPO)-$$s:$(IMAGE_TAG) . ; \
	done
