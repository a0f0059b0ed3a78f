package discordemu

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"testing"
)

// next_seq is a cursor: since_seq=next_seq returns exactly what came after
// the answer that carried it — none missed, none repeated.
func TestSinceSeqTakesUpWhereNextSeqLeftOff(t *testing.T) {
	t.Parallel()
	e := newTestEmu(t, func(c *Config) { c.Profile = "off" })
	get := func(path string) {
		res, _ := raw(t, e, http.MethodGet, path, "Bot "+tToken, "", "", nil)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d", path, res.StatusCode)
		}
	}
	page := func(since int64) (paths []string, next int64) {
		res, err := e.Admin().hc.Get(e.AdminURL() + "/_emu/requests?since_seq=" + strconv.FormatInt(since, 10))
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		var p requestsPage
		if err := json.Unmarshal(b, &p); err != nil {
			t.Fatalf("decode %s: %v", b, err)
		}
		for _, r := range p.Requests {
			paths = append(paths, r.Path)
		}
		return paths, p.NextSeq
	}

	get("/api/v10/users/@me")
	first, next := page(0)
	if len(first) != 1 {
		t.Fatalf("first page %v, want the one request", first)
	}
	get("/api/v10/guilds/" + tGuild)
	get("/api/v10/guilds/" + tGuild2)
	second, next2 := page(next)
	if want := []string{"/api/v10/guilds/" + tGuild, "/api/v10/guilds/" + tGuild2}; len(second) != 2 || second[0] != want[0] || second[1] != want[1] {
		t.Fatalf("page since next_seq %d: %v, want exactly %v", next, second, want)
	}
	if again, _ := page(next2); len(again) != 0 {
		t.Fatalf("page since the last next_seq: %v, want nothing new", again)
	}
	// The Go form has the same cursor.
	cur := e.Recorder().NextSeq()
	get("/api/v10/users/@me")
	if got := e.Recorder().Requests(RequestFilter{SinceSeq: cur}); len(got) != 1 {
		t.Fatalf("Requests since NextSeq(): %d records, want the one made after it", len(got))
	}
}
