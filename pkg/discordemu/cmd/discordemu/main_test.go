package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestRun_Usage(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{nil, {"bogus"}, {"serve", "--nope"}, {"serve", "--log-level", "loud"}} {
		if err := run(context.Background(), args, io.Discard); err == nil {
			t.Errorf("run(%v) succeeded", args)
		}
	}
}

func TestRun_ServeWithFixtureAndState(t *testing.T) {
	t.Parallel()
	state := filepath.Join(t.TempDir(), "state.json")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--listen", "127.0.0.1:0", "--fixture", "../../../../deploy/dev/guild.yaml",
			"--state", state, "--profile", "fast", "--time-scale", "0.5", "--log-level", "error"}, io.Discard)
	}()
	waitServing(t, done, "state file written", func() (bool, string) {
		_, err := os.Stat(state)
		return err == nil, fmt.Sprint(err)
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
}

func TestRun_ConfigFileUnknownKeyRejected(t *testing.T) {
	t.Parallel()
	cfg := filepath.Join(t.TempDir(), "cfg.json")
	if err := os.WriteFile(cfg, []byte(`{"strict":{"check_untouched_role":false}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	err := run(context.Background(), []string{"serve", "--listen", "127.0.0.1:0", "--config", cfg, "--log-level", "error"}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "check_untouched_role") {
		t.Fatalf("run: %v", err)
	}
}

func TestRun_ServeTLSWritesTheCertificate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	certFile := filepath.Join(dir, "cert.pem")
	state := filepath.Join(dir, "state.json")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var logs syncBuffer
	go func() {
		done <- run(ctx, []string{"serve", "--listen", "127.0.0.1:0", "--tls", "--tls-cert-out", certFile,
			"--fixture", "../../../../deploy/dev/guild.yaml", "--state", state, "--log-level", "info"}, &logs)
	}()
	var url string
	waitServing(t, done, "https listener logged", func() (bool, string) {
		if m := regexp.MustCompile(`url=(https://[0-9.:]+)`).FindStringSubmatch(logs.String()); m != nil {
			url = m[1]
		}
		return url != "", logs.String()
	})
	pemBytes, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatalf("certificate not written: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		t.Fatalf("%s is not a PEM certificate", certFile)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	res, err := hc.Get(url + "/_emu/config")
	if err != nil {
		t.Fatalf("GET /_emu/config trusting only the written certificate: %v", err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || !strings.Contains(string(body), `"tls":true`) {
		t.Fatalf("GET /_emu/config: %d %s", res.StatusCode, body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
}

func TestRun_CertOutWithoutTLSRefused(t *testing.T) {
	t.Parallel()
	err := run(context.Background(), []string{"serve", "--listen", "127.0.0.1:0", "--tls-cert-out",
		filepath.Join(t.TempDir(), "c.pem"), "--log-level", "error"}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "tls") {
		t.Fatalf("run: %v, want an error naming tls", err)
	}
}

// waitServing polls cond until it holds while run (reporting on done) keeps
// serving; run exiting first or 10 s passing fails the test.
func waitServing(t *testing.T, done <-chan error, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, last := cond()
		if ok {
			return
		}
		select {
		case err := <-done:
			t.Fatalf("run exited early: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %s", what, last)
		}
		<-tick.C
	}
}

// syncBuffer is a bytes.Buffer safe for the logger's writes and the test's reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
