package discordemu

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// loggedFile records the calls made on a file.
type loggedFile struct {
	stateFile
	tag     string
	log     *[]string
	syncErr error
}

func (f *loggedFile) Write(p []byte) (int, error) {
	*f.log = append(*f.log, f.tag+".write")
	return f.stateFile.Write(p)
}

func (f *loggedFile) Sync() error {
	*f.log = append(*f.log, f.tag+".sync")
	if f.syncErr != nil {
		return f.syncErr
	}
	return f.stateFile.Sync()
}

func (f *loggedFile) Close() error {
	*f.log = append(*f.log, f.tag+".close")
	return f.stateFile.Close()
}

func loggedOps(log *[]string, tmpSyncErr error) fileOps {
	return fileOps{
		createTemp: func(dir, pattern string) (stateFile, error) {
			f, err := os.CreateTemp(dir, pattern)
			return &loggedFile{stateFile: f, tag: "tmp", log: log, syncErr: tmpSyncErr}, err
		},
		openDir: func(dir string) (stateFile, error) {
			f, err := os.Open(dir)
			return &loggedFile{stateFile: f, tag: "dir", log: log}, err
		},
		rename: func(from, to string) error {
			*log = append(*log, "rename")
			return os.Rename(from, to)
		},
		remove: func(p string) error {
			*log = append(*log, "remove")
			return os.Remove(p)
		},
	}
}

// TestState_WriteFileAtomicSyncs: the temp file is fsynced before the rename and
// the directory after it; a failed fsync leaves the old file and no temp file.
func TestState_WriteFileAtomicSyncs(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	var log []string
	if err := writeFileAtomicWith(loggedOps(&log, nil), path, []byte(`{"v":1}`)); err != nil {
		t.Fatal(err)
	}
	want := []string{"tmp.write", "tmp.sync", "tmp.close", "rename", "dir.sync", "dir.close"}
	if !reflect.DeepEqual(log, want) {
		t.Fatalf("calls %v, want %v", log, want)
	}
	log = nil
	err := writeFileAtomicWith(loggedOps(&log, errors.New("disk gone")), path, []byte(`{"v":2}`))
	if err == nil || !strings.Contains(err.Error(), "disk gone") {
		t.Fatalf("err %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != `{"v":1}` {
		t.Fatalf("state after failed sync: %s", b)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("temp file left behind: %v", ents)
	}
}
