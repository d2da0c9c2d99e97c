// Package testutil holds helpers for tests that need real processes: a berth
// server built from this module (StartServer), CNCF Distribution as a
// reference registry (StartDistribution), a private dockerd (StartDockerd),
// podman and skopeo with throw-away storage (NewPodman, NewSkopeo), a private
// PostgreSQL cluster run as a non-root user (StartPostgres), an S3-compatible
// server, Versity's gateway over a temporary directory (StartS3), HAProxy as a
// round-robin load balancer in front of several nodes (StartLoadBalancer), and test
// images made locally from random content, so that no test ever pulls from
// the internet. For tests of one face without a whole server, NewStores
// opens the metadata store, audit log and identity service it is built on.
//
// Every helper isolates itself from the machine it runs on: temporary data
// directories, its own docker/podman configuration and credentials files, and
// loopback addresses only. Every helper registers its own cleanup with
// t.Cleanup.
//
// Helpers that need an external tool skip the test when the tool is missing,
// unless BERTH_E2E=1 is set, in which case a missing tool fails the test: the
// project's test script sets it so that end-to-end tests cannot silently turn
// into skips.
package testutil
