// Package natsembed runs a NATS server with JetStream inside the process, for
// the all-in-one binary and for tests.
package natsembed

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Config says where the embedded server listens and stores its data.
type Config struct {
	// StoreDir is the JetStream store directory. Required.
	StoreDir string
	// Host is the listen address; default 127.0.0.1 (loopback only).
	Host string
	// Port is the client port; 0 picks a free ephemeral port.
	Port int
	// ServerName names the server (and its JetStream domain member); default "scimcord".
	ServerName string
	// ReadyTimeout bounds the wait for the server to accept connections; default 10s.
	ReadyTimeout time.Duration
}

// Validate reports a configuration that cannot start.
func (c Config) Validate() error {
	if c.StoreDir == "" {
		return errors.New("natsembed: StoreDir is required")
	}
	if c.Port < 0 || c.Port > 65535 {
		return fmt.Errorf("natsembed: port %d out of range", c.Port)
	}
	return nil
}

// Server is a running embedded NATS server.
type Server struct {
	cfg Config
	ns  *server.Server
}

// Start starts the server and waits until it accepts client connections.
func Start(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	if cfg.ServerName == "" {
		cfg.ServerName = "scimcord"
	}
	if cfg.ReadyTimeout == 0 {
		cfg.ReadyTimeout = 10 * time.Second
	}
	port := cfg.Port
	if port == 0 {
		// Pick the port once so that a restart of the same Server (tests that
		// cause a NATS outage) comes back on the same address.
		p, err := freePort(cfg.Host)
		if err != nil {
			return nil, err
		}
		port = p
	}
	cfg.Port = port
	s := &Server{cfg: cfg}
	if err := s.start(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Server) start() error {
	opts := &server.Options{
		ServerName: s.cfg.ServerName,
		Host:       s.cfg.Host,
		Port:       s.cfg.Port,
		JetStream:  true,
		StoreDir:   s.cfg.StoreDir,
		NoSigs:     true,
		NoLog:      true,
		MaxPayload: 8 * 1024 * 1024,
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("natsembed: new server (store %s): %w", s.cfg.StoreDir, err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(s.cfg.ReadyTimeout) {
		ns.Shutdown()
		return fmt.Errorf("natsembed: server on %s:%d not ready after %s", s.cfg.Host, s.cfg.Port, s.cfg.ReadyTimeout)
	}
	s.ns = ns
	return nil
}

// URL is the client URL (nats://host:port).
func (s *Server) URL() string {
	return "nats://" + net.JoinHostPort(s.cfg.Host, strconv.Itoa(s.cfg.Port))
}

// Shutdown stops the server and waits for it to finish.
func (s *Server) Shutdown() {
	if s.ns == nil {
		return
	}
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
	s.ns = nil
}

// Restart starts a stopped server again on the same address and store.
func (s *Server) Restart() error {
	if s.ns != nil {
		return errors.New("natsembed: restart of a running server")
	}
	return s.start()
}

// Running reports whether the server is up.
func (s *Server) Running() bool { return s.ns != nil && s.ns.Running() }

func freePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, fmt.Errorf("natsembed: pick a port on %s: %w", host, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
