package discordemu

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// loadState reads the state file. It returns false when the file does not exist.
func (e *Emulator) loadState(path string) (bool, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("discordemu: read state %s: %w", path, err)
	}
	w := newWorld()
	if err := json.Unmarshal(data, w); err != nil {
		return false, fmt.Errorf("discordemu: decode state %s: %w", path, err)
	}
	fixWorld(w)
	e.w = w
	return true, nil
}

// fixWorld replaces nil maps after decoding.
func fixWorld(w *world) {
	if w.Apps == nil {
		w.Apps = map[string]*appState{}
	}
	if w.Users == nil {
		w.Users = map[string]*userState{}
	}
	if w.Guilds == nil {
		w.Guilds = map[string]*guildState{}
	}
	if w.Tokens == nil {
		w.Tokens = map[string]*tokenState{}
	}
	if w.Refresh == nil {
		w.Refresh = map[string]string{}
	}
	if w.Codes == nil {
		w.Codes = map[string]*codeState{}
	}
	for _, g := range w.Guilds {
		if g.Roles == nil {
			g.Roles = map[string]*roleState{}
		}
		if g.Members == nil {
			g.Members = map[string]*memberState{}
		}
		if g.Bans == nil {
			g.Bans = map[string]*banState{}
		}
		for _, m := range g.Members {
			if m.Roles == nil {
				m.Roles = []string{}
			}
		}
	}
}

// afterCommitLocked persists the state and keeps history for consistency lag.
// Caller holds e.mu.
func (e *Emulator) afterCommitLocked() {
	cfg := e.config()
	var data []byte
	if cfg.StatePath != "" || cfg.ConsistencyLagMS > 0 {
		var err error
		data, err = json.Marshal(e.w)
		if err != nil {
			e.log.Error("discordemu: encode state", "err", err)
			return
		}
	}
	if cfg.ConsistencyLagMS > 0 {
		now := e.now()
		e.history = append(e.history, histEntry{at: now, data: data})
		// keep the newest entry older than the lag, drop older ones
		lag := time.Duration(cfg.ConsistencyLagMS) * time.Millisecond
		cut := 0
		for i := range e.history {
			if now.Sub(e.history[i].at) > lag {
				cut = i
			}
		}
		e.history = e.history[cut:]
	}
	if cfg.StatePath != "" {
		if err := writeFileAtomic(cfg.StatePath, data); err != nil {
			e.log.Error("discordemu: save state", "err", err)
		}
	}
}

// stateFile is the part of *os.File that writeFileAtomic uses.
type stateFile interface {
	Write(p []byte) (int, error)
	Sync() error
	Close() error
	Name() string
}

// fileOps are the file-system calls of writeFileAtomic (replaceable in tests).
type fileOps struct {
	createTemp func(dir, pattern string) (stateFile, error)
	openDir    func(dir string) (stateFile, error)
	rename     func(from, to string) error
	remove     func(path string) error
}

var osFileOps = fileOps{
	createTemp: func(dir, pattern string) (stateFile, error) { return os.CreateTemp(dir, pattern) },
	openDir:    func(dir string) (stateFile, error) { return os.Open(dir) },
	rename:     os.Rename,
	remove:     os.Remove,
}

func writeFileAtomic(path string, data []byte) error {
	return writeFileAtomicWith(osFileOps, path, data)
}

// writeFileAtomicWith writes data to a temp file in path's directory, fsyncs and
// closes it, renames it over path and fsyncs the directory, so that after a
// crash path holds either the old or the new state, never a torn or empty file.
func writeFileAtomicWith(ops fileOps, path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := ops.createTemp(dir, ".discordemu-state-*")
	if err != nil {
		return fmt.Errorf("create temp state in %s: %w", dir, err)
	}
	tmp := f.Name()
	fail := func(what string, err error) error {
		_ = f.Close()
		_ = ops.remove(tmp)
		return fmt.Errorf("%s temp state %s: %w", what, tmp, err)
	}
	if _, err := f.Write(data); err != nil {
		return fail("write", err)
	}
	if err := f.Sync(); err != nil {
		return fail("sync", err)
	}
	if err := f.Close(); err != nil {
		_ = ops.remove(tmp)
		return fmt.Errorf("close temp state %s: %w", tmp, err)
	}
	if err := ops.rename(tmp, path); err != nil {
		_ = ops.remove(tmp)
		return fmt.Errorf("rename state to %s: %w", path, err)
	}
	d, err := ops.openDir(dir)
	if err != nil {
		return fmt.Errorf("open state dir %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync state dir %s: %w", dir, err)
	}
	return nil
}

// viewLocked returns the world GET routes read: the live state, or with
// consistency_lag_ms the state as of that long ago. Caller holds e.mu.
func (e *Emulator) viewLocked(now time.Time) *world {
	lag := time.Duration(e.config().ConsistencyLagMS) * time.Millisecond
	if lag <= 0 || len(e.history) == 0 {
		return e.w
	}
	var pick []byte
	for _, h := range e.history {
		if now.Sub(h.at) >= lag {
			pick = h.data
		}
	}
	if pick == nil {
		// every commit is younger than the lag: show the oldest known state
		pick = e.history[0].data
	}
	w := newWorld()
	if err := json.Unmarshal(pick, w); err != nil {
		return e.w
	}
	fixWorld(w)
	return w
}

// snapshotLocked encodes the whole state.
func (e *Emulator) snapshotLocked() ([]byte, error) {
	b, err := json.Marshal(e.w)
	if err != nil {
		return nil, fmt.Errorf("discordemu: encode snapshot: %w", err)
	}
	return b, nil
}

// restoreLocked replaces the state with a snapshot.
func (e *Emulator) restoreLocked(data []byte) error {
	w := newWorld()
	if err := json.Unmarshal(data, w); err != nil {
		return fmt.Errorf("discordemu: decode snapshot: %w", err)
	}
	fixWorld(w)
	e.w = w
	e.history = nil
	e.afterCommitLocked()
	return nil
}

// Reset clears all state, limiter state, faults and recordings (config is kept).
func (e *Emulator) Reset() {
	e.mu.Lock()
	e.w = newWorld()
	e.history = nil
	e.afterCommitLocked()
	e.mu.Unlock()
	e.lim.mu.Lock()
	e.lim.reset()
	e.lim.mu.Unlock()
	e.faults.clear()
	e.rec.Clear()
}

// seedHistory records the pre-mutation state as the oldest history entry, so
// that lagged reads can show the state before the first commit.
func (e *Emulator) seedHistory() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.history) > 0 {
		return
	}
	data, err := json.Marshal(e.w)
	if err != nil {
		return
	}
	e.history = append(e.history, histEntry{at: time.Time{}, data: data})
}
