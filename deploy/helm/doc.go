// Package helm holds the tests of the scimcord Helm chart (deploy/helm/scimcord)
// and of the image build (deploy/docker): they render the chart with the pinned
// helm binary (.tools/bin/helm, built by `make chart`) for the default values
// and every value set in scimcord/ci/, decode every manifest strictly into its
// Kubernetes, Prometheus Operator or Gateway API Go type, and check the
// properties the chart promises (secrets only in Secrets, hardened pods with
// probes and requests, PDBs, NetworkPolicies, checksum-driven rollouts, clear
// failures on bad values). The environment contract is read from the services'
// cmd mains at test time, each listen port is followed from its variable to
// containerPort, probes, Services and policies, and the mapping service is run
// to answer the rendered probes while NATS is down.
package helm
